"""The fast store path: column arrays built straight from the harvested dataclasses, error groups
written in bulk, a bounded number of queries per batch, and values stored exactly as harvested
(jsonb-hostile values cleaned, masking left to the readers)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from brokers import headers
from brokers.base import HarvestedMessage, Origin
from dlqadmin.models import DeadLetter, ErrorGroup, ErrorGroupStatus, MaskingRule, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import dead_letters_store

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def source():
    conn = connection_create(name="k", kind="kafka", url="127.0.0.1:9092")
    return Source.objects.create(connection=conn, name="orders-dlt", mode="topic", address="orders-dlt")


def message(n: int, *, cls: str = "", error: str = "", **kw) -> HarvestedMessage:
    fields = {
        "position": f"c/orders-dlt/0/{n}",
        "payload": f'{{"order": {n}}}'.encode(),
        "headers": headers.encode_pairs([("tenant", b"acme"), ("kafka_dlt-exception-fqcn", cls.encode())]),
        "properties": {"topic": "orders-dlt", "offset": n},
        "key": f"k{n}".encode(),
        "origin": Origin(topic="orders", partition=0, offset=n, extra={"format": "spring"}),
        "reason": "exception",
        "error_class": cls or f"com.acme.Error{n % 7}",
        "error_message": error or f"order {n} failed",
        "failed_at": T0 + timedelta(seconds=n),
        **kw,
    }
    return HarvestedMessage(**fields)


def test_a_batch_takes_the_same_few_queries_however_many_groups_it_touches(source):
    dead_letters_store(source=source, batch=[message(n) for n in range(7)])  # 7 groups exist now
    many = [message(n, cls=f"com.acme.New{n}") for n in range(100, 140)]  # 40 new groups
    many += [message(n) for n in range(200, 260)]  # and the 7 existing ones again
    with CaptureQueriesContext(db) as queries:
        result = dead_letters_store(source=source, batch=many)
    assert result.inserted == 100
    # lock, existing positions, groups (select, insert, update), insert, source, alert rules
    # per appeared group at most: never one query per message or per touched group
    assert len(queries) <= 10 + 40, [q["sql"][:80] for q in queries]
    assert ErrorGroup.objects.count() == 47
    assert sum(ErrorGroup.objects.values_list("count", flat=True)) == 107


def test_counting_into_existing_groups_updates_counts_times_and_reopens(source):
    dead_letters_store(source=source, batch=[message(1, cls="E", error="x"), message(2, cls="F", error="y")])
    ErrorGroup.objects.filter(error_class="E").update(status=ErrorGroupStatus.RESOLVED)
    ErrorGroup.objects.filter(error_class="F").update(status=ErrorGroupStatus.ACKNOWLEDGED)
    dead_letters_store(
        source=source,
        batch=[
            message(3, cls="E", error="x", failed_at=T0 - timedelta(hours=1)),
            message(4, cls="E", error="x", failed_at=T0 + timedelta(hours=1)),
            message(5, cls="F", error="y"),
        ],
    )
    e, f = ErrorGroup.objects.get(error_class="E"), ErrorGroup.objects.get(error_class="F")
    assert (e.count, e.status, e.first_seen, e.last_seen) == (
        3,
        ErrorGroupStatus.OPEN,
        T0 - timedelta(hours=1),
        T0 + timedelta(hours=1),
    )
    assert e.status_changed_at is not None
    assert (f.count, f.status) == (2, ErrorGroupStatus.ACKNOWLEDGED)
    rows = DeadLetter.objects.filter(position__in=["c/orders-dlt/0/3", "c/orders-dlt/0/4"])
    assert {r.error_group_id for r in rows} == {e.pk}


def test_every_column_is_stored_exactly(source):
    source.max_redrives = 2
    source.save()
    m = message(
        9,
        payload=b"\x00\xff\x80 binary",
        key=None,
        stacktrace="at x\n\tat y",
        retry_count=2,
        payload_available=False,
        origin=Origin(
            exchange="ex",
            routing_key="rk",
            routing_keys=["rk", "cc"],
            queue="q",
            topic="t",
            partition=3,
            offset=2**40,
            stream="S",
            subject="a.b",
            seq=2**33,
            extra={"deaths": [{"count": 1}]},
        ),
    )
    ids = dead_letters_store(source=source, batch=[m]).inserted_ids
    row = DeadLetter.objects.get(pk=ids[0])
    assert bytes(row.payload) == b"\x00\xff\x80 binary" and row.payload_size == 10
    assert row.key is None and row.payload_available is False
    assert headers.decode_pairs(row.headers) == [("tenant", b"acme"), ("kafka_dlt-exception-fqcn", b"")]
    assert row.properties == {"topic": "orders-dlt", "offset": 9}
    assert (row.origin_exchange, row.origin_routing_key, row.origin_queue, row.origin_topic) == (
        "ex",
        "rk",
        "q",
        "t",
    )
    assert (
        row.origin_partition,
        row.origin_offset,
        row.origin_stream,
        row.origin_subject,
        row.origin_seq,
    ) == (
        3,
        2**40,
        "S",
        "a.b",
        2**33,
    )
    assert row.origin_extra == {"deaths": [{"count": 1}], "routing_keys": ["rk", "cc"]}
    assert (row.reason, row.error_class, row.error_message, row.stacktrace) == (
        "exception",
        "com.acme.Error2",
        "order 9 failed",
        "at x\n\tat y",
    )
    assert row.failed_at == T0 + timedelta(seconds=9) and row.harvested_at is not None
    assert (row.retry_count, row.status, row.redrive_count, row.last_redriven_at) == (2, "parked", 0, None)
    assert row.error_group.error_class == "com.acme.Error2"


def test_jsonb_hostile_values_are_cleaned_and_exact_header_bytes_kept(source):
    m = message(
        1,
        headers=headers.encode_mapping({"nul": "a\x00b", "raw": b"\x00\xff"}),
        properties={"text": "x\x00y", "nan": float("nan"), "nested": {"k\x00": ["\x00"]}},
        origin=Origin(extra={"consumer": "c\x00"}),
        error_message="bad\x00byte",
    )
    ids = dead_letters_store(source=source, batch=[m]).inserted_ids
    row = DeadLetter.objects.get(pk=ids[0])
    assert headers.get(row.headers, "nul") == "a\x00b" and headers.get(row.headers, "raw") == b"\x00\xff"
    assert row.properties == {"text": "x\ufffdy", "nan": None, "nested": {"k\ufffd": ["\ufffd"]}}
    assert row.origin_extra == {"consumer": "c\ufffd"}
    assert row.error_message == "bad\ufffdbyte"


def test_masking_rules_do_not_change_what_is_stored(source):
    MaskingRule.objects.create(name="email", kind="regex", pattern=r"[\w.]+@[\w.]+", replacement="<email>")
    MaskingRule.objects.create(name="tenant", kind="header", pattern="tenant")
    m = message(1, payload=b'{"email": "ann@example.com"}', error="mail to ann@example.com bounced")
    ids = dead_letters_store(source=source, batch=[m]).inserted_ids
    row = DeadLetter.objects.get(pk=ids[0])
    assert bytes(row.payload) == b'{"email": "ann@example.com"}'
    assert row.error_message == "mail to ann@example.com bounced"
    assert headers.get(row.headers, "tenant") == b"acme"


def test_inserted_ids_follow_the_batch_order(source):
    batch = [message(n) for n in (5, 3, 8, 1)]
    ids = dead_letters_store(source=source, batch=batch).inserted_ids
    positions = dict(DeadLetter.objects.filter(pk__in=ids).values_list("pk", "position"))
    assert [positions[i] for i in ids] == [m.position for m in batch]
