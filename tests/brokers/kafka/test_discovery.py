"""Kafka discovery: dead-letter topics found by name and by their dead-letter headers."""

from __future__ import annotations

from brokers import get_adapter
from tests.brokers.contract import run
from tests.conftest import unique
from tests.support.kafka import CONNECT, Record, config, create_topics, produce


def test_discover_finds_topics_by_their_dead_letter_headers():
    prefix = unique("disc")
    named, by_headers, ordinary = f"{prefix}.orders.dlq", f"{prefix}.orders.failed", f"{prefix}.orders"
    create_topics(named, by_headers, ordinary)
    context = [(f"__connect.errors.{k}", v.encode()) for k, v in CONNECT.items()]
    produce(by_headers, [Record(b"bad", b"k", context)])
    produce(ordinary, [Record(b"fine", b"k", [("tenant", b"acme")])])

    async def go():
        async with get_adapter(config(discover_include="^" + prefix.replace(".", r"\."))) as adapter:
            return await adapter.discover()

    found = {d.address: d for d in run(go())}
    assert set(found) == {named, by_headers}
    assert "dead-letter" in found[named].reason
    assert "__connect.errors" in found[by_headers].reason
    assert found[by_headers].messages == 1 and found[by_headers].mode == "topic"
