"""The store never fails on a message's content: values are fitted to their columns (noted), and
a row the database still refuses is isolated and stored raw, while the rest of its batch is
stored as usual."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection as db

from brokers import headers
from brokers.base import HarvestedMessage, Origin
from dlqadmin.models import DeadLetter, ErrorGroup, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import dead_letters_store

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def source():
    conn = connection_create(name="kafka", kind="kafka", url="127.0.0.1:9092")
    return Source.objects.create(connection=conn, name="orders-dlt", mode="topic", address="orders-dlt")


def message(position: str, *, error="boom", payload=b"raw \xff\x00", **origin) -> HarvestedMessage:
    return HarvestedMessage(
        position=position,
        payload=payload,
        headers=headers.encode_pairs([("tenant", b"acme"), ("bin", b"\xff")]),
        properties={"timestamp": 1},
        origin=Origin(topic="orders", **origin),
        reason="exception",
        error_class="OrderError",
        error_message=error,
        failed_at=T0,
    )


def test_values_beyond_their_columns_are_fitted_and_noted_in_one_insert(source):
    huge = message("huge", partition=2**40, offset=2**70, seq=2**64)
    huge.retry_count = 3_000_000_000
    negative = message("negative", partition=-(2**31) - 1)
    negative.retry_count = -5
    nul = message("nul\x00position")
    nul.headers = [
        ["a\x00b", {"t": "str", "v": "v"}],
        ["t", {"t": "table", "v": [["k\x00", {"t": "int", "v": 1}]]}],
    ]
    odd = message("odd")
    odd.properties = {
        "when": T0,
        "amount": Decimal("1.5"),
        "big": 10**2000,
        "nan": float("nan"),
        "s": "a\x00",
    }
    odd.origin.extra = {"delivery_count": Decimal("2")}
    fine = message("fine", partition=3, offset=7)

    result = dead_letters_store(source=source, batch=[huge, negative, nul, odd, fine])

    assert (result.inserted, result.duplicates) == (5, 0)
    rows = {row.position: row for row in DeadLetter.objects.filter(source=source)}
    assert rows["huge"].retry_count == 2**31 - 1
    assert (rows["huge"].origin_partition, rows["huge"].origin_offset, rows["huge"].origin_seq) == (
        None,
        None,
        None,
    )
    notes = "\n".join(rows["huge"].read_notes)
    for field in (
        "retry_count: 3000000000",
        "origin partition: 1099511627776",
        "origin offset",
        "origin sequence",
    ):
        assert f"could not read {field}" in notes, notes
    assert rows["negative"].retry_count == 0 and rows["negative"].origin_partition is None
    assert "could not read retry_count: -5 is outside 0..2147483647" in rows["negative"].read_notes[0]
    assert rows["nul\ufffdposition"].headers[0][0] == "a\ufffdb"
    assert rows["nul\ufffdposition"].headers[1][1]["v"][0][0] == "k\ufffd"
    assert rows["nul\ufffdposition"].read_notes == [
        "could not read header names: NUL is not storable; stored as U+FFFD"
    ]
    assert rows["odd"].properties["amount"] == "1.5" and rows["odd"].properties["nan"] is None
    assert rows["odd"].properties["big"] == str(10**2000) and rows["odd"].properties["s"] == "a\ufffd"
    assert rows["fine"].read_notes == [] and (rows["fine"].origin_partition, rows["fine"].origin_offset) == (
        3,
        7,
    )
    for row in rows.values():
        assert bytes(row.payload) == b"raw \xff\x00"


@pytest.fixture
def refusing_database():
    """A database that refuses some rows for their content, as PostgreSQL does for values no
    adapter foresaw: an IntegrityError (CHECK) for one error text, a DataError (a failing cast)
    for an origin_extra value. Rolled back with the test's transaction."""
    with db.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE dlqadmin_deadletter ADD CONSTRAINT test_refuse_text "
            "CHECK (error_message NOT LIKE '%%refused by a check%%')"
        )
        cursor.execute(
            "ALTER TABLE dlqadmin_deadletter ADD CONSTRAINT test_refuse_cast "
            "CHECK (origin_extra->>'n' IS NULL OR (origin_extra->>'n')::int >= 0)"
        )


def test_a_row_the_database_refuses_is_stored_raw_and_the_batch_goes_on(source, refusing_database):
    batch = [message(f"m{i}", error=f"order {i} not found") for i in range(10)]
    batch[3].error_message = "refused by a check"
    batch[8].origin.extra = {"n": "not a number"}

    result = dead_letters_store(source=source, batch=batch)

    assert (result.inserted, result.duplicates) == (10, 0)
    rows = {row.position: row for row in DeadLetter.objects.filter(source=source)}
    assert len(rows) == 10
    for position in ("m3", "m8"):
        raw = rows[position]
        assert bytes(raw.payload) == b"raw \xff\x00" and raw.reason == "unreadable"
        assert raw.properties["headers_json_b64"]  # the headers, as text
        (note,) = raw.read_notes
        assert note.startswith("could not read message: the database refused it (")
    assert "test_refuse_text" in rows["m3"].read_notes[0]
    assert "invalid input syntax for type integer" in rows["m8"].read_notes[0]
    for position in set(rows) - {"m3", "m8"}:
        assert rows[position].read_notes == [] and rows[position].error_message.startswith("order ")
    source.refresh_from_db()
    assert source.harvested_total == 10
    # the refused attempts were rolled back: each message is counted into its group once
    assert sum(ErrorGroup.objects.filter(source=source).values_list("count", flat=True)) == 10

    again = dead_letters_store(source=source, batch=batch)  # a redelivery: nothing new
    assert (again.inserted, again.duplicates) == (0, 10)
