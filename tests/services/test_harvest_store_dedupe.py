"""Redelivered messages: the store finds them through the (source, position) UNIQUE index on insert
and never counts them into error groups, within a batch as across batches."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from brokers.base import HarvestedMessage, Origin
from dlqadmin.models import DeadLetter, ErrorGroup, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import dead_letters_store

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def source():
    conn = connection_create(name="n", kind="nats", url="nats://127.0.0.1:4222")
    return Source.objects.create(connection=conn, name="orders-dlq", mode="dlq_stream", address="DLQ")


def message(n: int, cls: str) -> HarvestedMessage:
    return HarvestedMessage(
        position=f"DLQ:{n}",
        payload=f'{{"order": {n}}}'.encode(),
        origin=Origin(stream="ORDERS", seq=n),
        reason="dead_letter",
        error_class=cls,
        error_message="order not found",
        failed_at=T0 + timedelta(minutes=n),
    )


def counts() -> dict[str, int]:
    return dict(ErrorGroup.objects.values_list("error_class", "count"))


def test_a_partly_stored_batch_stores_and_counts_only_its_new_messages(source):
    dead_letters_store(source=source, batch=[message(1, "A"), message(2, "B")])
    result = dead_letters_store(
        source=source, batch=[message(1, "A"), message(3, "B"), message(2, "B"), message(4, "C")]
    )
    assert (result.inserted, result.duplicates) == (2, 2)
    positions = dict(DeadLetter.objects.filter(pk__in=result.inserted_ids).values_list("pk", "position"))
    assert [positions[pk] for pk in result.inserted_ids] == ["DLQ:3", "DLQ:4"]
    assert counts() == {"A": 1, "B": 2, "C": 1}
    b = ErrorGroup.objects.get(error_class="B")
    assert (b.first_seen, b.last_seen) == (T0 + timedelta(minutes=2), T0 + timedelta(minutes=3))
    source.refresh_from_db()
    assert source.harvested_total == 4
    assert DeadLetter.objects.filter(source=source).count() == 4


def test_a_redelivered_message_does_not_bring_back_a_deleted_group(source):
    dead_letters_store(source=source, batch=[message(1, "A")])
    ErrorGroup.objects.all().delete()  # the stored row keeps no group
    result = dead_letters_store(source=source, batch=[message(1, "A")])
    assert (result.inserted, result.duplicates) == (0, 1)
    assert not ErrorGroup.objects.exists()
    dead_letters_store(source=source, batch=[message(1, "A"), message(2, "A")])
    assert counts() == {"A": 1}


def test_duplicates_are_found_by_the_insert_not_by_a_lookup_of_stored_positions(source):
    # A ``position IN (...)`` lookup of a source new to the planner's statistics is planned on the
    # plain source_id index and reads every stored row of the source, each batch.
    dead_letters_store(source=source, batch=[message(n, "A") for n in range(5)])
    with CaptureQueriesContext(db) as queries:
        result = dead_letters_store(source=source, batch=[message(n, "A") for n in range(3, 8)])
    assert (result.inserted, result.duplicates) == (3, 2)
    lookups = [q["sql"] for q in queries if 'FROM "dlqadmin_deadletter"' in q["sql"]]
    assert not lookups, lookups


def test_a_message_repeated_within_one_batch_is_stored_and_counted_once(source):
    first = dead_letters_store(source=source, batch=[message(1, "A"), message(2, "B"), message(2, "B")])
    again = dead_letters_store(source=source, batch=[message(1, "A"), message(3, "B"), message(4, "C")])
    assert (first.inserted, first.duplicates, again.inserted, again.duplicates) == (2, 1, 2, 1)
    assert DeadLetter.objects.filter(source=source).count() == 4
    assert counts() == {"A": 1, "B": 2, "C": 1}
    assert len(set(first.inserted_ids + again.inserted_ids)) == 4
