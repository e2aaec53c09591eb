"""brokers.pipeline.store_ahead: the next batch is read while the previous one is stored, and a
batch is acknowledged only after its own store returned, in order; on any failure every batch
read and not acknowledged is released. Pure asyncio: the broker side is a list of batches."""

from __future__ import annotations

import asyncio

import pytest

from brokers.base import HarvestedMessage
from brokers.pipeline import store_ahead


def run(coro):
    return asyncio.run(coro)


class Broker:
    """Batches to read, and a log of what happened in which order."""

    def __init__(self, batches: int, *, fail_read_at: int | None = None):
        self.batches = [[f"b{i}m{j}" for j in range(3)] for i in range(batches)]
        self.fail_read_at = fail_read_at
        self.events: list[str] = []

    async def read(self):
        for i, batch in enumerate(self.batches):
            await asyncio.sleep(0)
            if i == self.fail_read_at:
                self.events.append(f"read-error {i}")
                raise ConnectionError("broker went away")
            self.events.append(f"read {i}")
            yield (i, batch)

    async def convert(self, raw) -> list[HarvestedMessage]:
        i, batch = raw
        return [HarvestedMessage(position=p, payload=p.encode()) for p in batch]

    async def acknowledge(self, raw) -> None:
        self.events.append(f"ack {raw[0]}")

    async def release(self, raw) -> None:
        self.events.append(f"release {raw[0]}")


class Store:
    """The sink: ``slow`` stores wait a little (so the next read overlaps), ``fail_at`` raises."""

    def __init__(self, broker: Broker, *, fail_at: int | None = None):
        self.broker, self.fail_at, self.calls = broker, fail_at, 0

    async def __call__(self, batch: list[HarvestedMessage]) -> None:
        i = self.calls
        self.calls += 1
        self.broker.events.append(f"store {i} start")
        await asyncio.sleep(0.01)
        if i == self.fail_at:
            self.broker.events.append(f"store {i} failed")
            raise RuntimeError("database down")
        self.broker.events.append(f"store {i} done")


def drive(broker: Broker, store: Store):
    return store_ahead(
        broker.read(), broker.convert, store, acknowledge=broker.acknowledge, release=broker.release
    )


def test_the_next_batch_is_read_while_the_previous_one_is_stored():
    broker = Broker(3)
    run(drive(broker, Store(broker)))
    events = broker.events
    assert events.index("read 1") < events.index("store 0 done")
    assert events.index("read 2") < events.index("store 1 done")


def test_each_batch_is_acked_only_after_its_own_store_and_in_order():
    broker = Broker(4)
    run(drive(broker, Store(broker)))
    acks = [e for e in broker.events if e.startswith("ack")]
    assert acks == ["ack 0", "ack 1", "ack 2", "ack 3"]
    for i in range(4):
        assert broker.events.index(f"store {i} done") < broker.events.index(f"ack {i}")
    assert not [e for e in broker.events if e.startswith("release")]


def test_a_failing_store_acks_nothing_after_it_and_releases_what_was_read():
    broker = Broker(5)
    with pytest.raises(RuntimeError, match="database down"):
        run(drive(broker, Store(broker, fail_at=1)))
    acks = [e for e in broker.events if e.startswith("ack")]
    released = [e for e in broker.events if e.startswith("release")]
    assert acks == ["ack 0"]  # stored before the failure
    assert released == ["release 1", "release 2"]  # the failed one and the one read meanwhile
    assert "read 3" not in broker.events


def test_a_failing_read_still_acks_the_batch_whose_store_completed():
    broker = Broker(4, fail_read_at=2)
    with pytest.raises(ConnectionError):
        run(drive(broker, Store(broker)))
    events = broker.events
    assert [e for e in events if e.startswith("ack")] == ["ack 0", "ack 1"]
    assert events.index("store 1 done") < events.index("ack 1")
    assert not [e for e in events if e.startswith("release")]


def test_a_failing_ack_releases_the_rest_and_propagates():
    broker = Broker(4)

    async def acknowledge(raw):
        if raw[0] == 1:
            raise ConnectionError("ack lost")
        broker.events.append(f"ack {raw[0]}")

    with pytest.raises(ConnectionError, match="ack lost"):
        run(
            store_ahead(
                broker.read(), broker.convert, Store(broker), acknowledge=acknowledge, release=broker.release
            )
        )
    assert [e for e in broker.events if e.startswith("ack")] == ["ack 0"]
    # batch 1 was stored but its ack failed: released (redelivered = a duplicate, deduplicated);
    # batch 2 was read meanwhile and is released unstored.
    assert [e for e in broker.events if e.startswith("release")] == ["release 1", "release 2"]


def test_an_empty_conversion_is_acked_without_calling_the_sink():
    broker = Broker(2)

    async def convert(raw):
        return [] if raw[0] == 0 else await broker.convert(raw)

    store = Store(broker)
    run(store_ahead(broker.read(), convert, store, acknowledge=broker.acknowledge, release=broker.release))
    assert store.calls == 1
    assert [e for e in broker.events if e.startswith("ack")] == ["ack 0", "ack 1"]
