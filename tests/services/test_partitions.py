"""The dead-letter body's id-range partitions: created ahead of the harvest, whatever the partition
size; retention drops a partition whole when every dead letter in it may go, row deletes otherwise.

Tiny partitions (DLQADMIN_PARTITION_SIZE=10) above the ones migration 0020 made: the ids are
moved past them first. These tests commit (transaction=True), so the partitions they make stay
for the tests after them, like the ids they took."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from brokers.base import HarvestedMessage, Origin
from dlqadmin import partition_sql
from dlqadmin.models import (
    AuditEvent,
    CounterName,
    DeadLetter,
    DeadLetterKey,
    DeadLetterRevision,
    DeadLetterState,
    RedriveAttempt,
    RedriveJob,
    Source,
)
from dlqadmin.models import dead_letters as dead_letter_models
from dlqadmin.selectors_dashboard import status_counts
from dlqadmin.services.connections import connection_create
from dlqadmin.services.counters import counter_totals
from dlqadmin.services.harvest.store import dead_letters_store
from dlqadmin.services.maintenance import retention_purge
from dlqadmin.services.partitions import partitions_ensure

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SIZE = 10


@pytest.fixture
def tiny(settings):
    """Partitions of SIZE ids from the next id on (``top``, a multiple of SIZE): the ids moved past
    the highest partition (ids only ever grow), partitions made ahead, the remembered bound
    forgotten before and after."""
    settings.DLQADMIN_PARTITION_SIZE = SIZE
    dead_letter_models._spare_from.clear()
    with connection.cursor() as cursor:
        top = (partition_sql.partitions(cursor)[-1].upper // SIZE + 1) * SIZE
        cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [partition_sql.STATES, top - 1])
    partitions_ensure()
    yield top
    dead_letter_models._spare_from.clear()


@pytest.fixture
def source():
    conn = connection_create(name="p", kind="nats", url="nats://127.0.0.1:4222")
    return Source.objects.create(connection=conn, name="parts-dlq", mode="dlq_stream", address="DLQ")


def messages(first: int, count: int, *, failed_at=NOW) -> list[HarvestedMessage]:
    return [
        HarvestedMessage(
            position=f"DLQ:{n}",
            payload=f'{{"n": {n}}}'.encode(),
            origin=Origin(stream="ORDERS", seq=n),
            error_class="KeyError",
            error_message="order not found",
            failed_at=failed_at,
        )
        for n in range(first, first + count)
    ]


def bounds() -> list[tuple[int | None, int]]:
    with connection.cursor() as cursor:
        return [(p.lower, p.upper) for p in partition_sql.partitions(cursor)]


def partition_of(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {partition_sql.LETTERS} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_a_harvest_across_many_tiny_partitions_never_misses_one(tiny, source):
    stored = []
    for first, count in [(0, 7), (7, 7), (14, 3), (17, 25), (42, 9), (51, 1)]:  # 25: over two partitions
        result = dead_letters_store(source=source, batch=messages(first, count))
        assert result.inserted == count
        stored += result.inserted_ids
    assert DeadLetter.objects.filter(source=source).count() == DeadLetterKey.objects.count() == 52
    assert partition_of(stored[0]) == f"{partition_sql.LETTERS}_p{tiny}"
    assert len({partition_of(pk) for pk in stored}) >= 4
    ours = [(lower, upper) for lower, upper in bounds() if lower is not None and lower >= tiny]
    assert all(b[0] == a[1] for a, b in zip(ours, ours[1:], strict=False))  # no gap, no overlap
    assert ours[-1][0] > max(stored)  # a spare one
    again = dead_letters_store(source=source, batch=messages(0, 52))  # dedupe across partitions
    assert (again.inserted, again.duplicates) == (0, 52)


def test_a_store_that_outran_the_partitions_creates_them_and_stores(tiny, source):
    """No partition created ahead (the ids jumped past them): the store creates them itself."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [partition_sql.STATES, tiny + 5 * SIZE]
        )
    result = dead_letters_store(source=source, batch=messages(0, 15))
    assert result.inserted == 15 and min(result.inserted_ids) > tiny + 5 * SIZE
    assert DeadLetter.objects.count() == 15
    ours = [(lower, upper) for lower, upper in bounds() if lower is not None and lower >= tiny]
    assert all(upper - lower == SIZE for lower, upper in ours)  # the gap filled on the grid
    assert all(b[0] == a[1] for a, b in zip(ours, ours[1:], strict=False))


def test_ids_that_jumped_far_get_one_partition_for_the_gap_not_thousands(tiny, source):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
            [partition_sql.STATES, tiny + (partition_sql.GRID_FILL + 10) * SIZE],
        )
    before = len(bounds())
    assert dead_letters_store(source=source, batch=messages(0, 3)).inserted == 3
    assert len(bounds()) - before <= 3  # the gap, the one being filled, a spare


def test_the_partition_size_may_change_between_partitions(tiny, source, settings):
    dead_letters_store(source=source, batch=messages(0, 12))
    settings.DLQADMIN_PARTITION_SIZE = 25
    dead_letter_models._spare_from.clear()
    dead_letters_store(source=source, batch=messages(12, 40))
    assert DeadLetter.objects.count() == 52
    ours = [(lower, upper) for lower, upper in bounds() if lower is not None and lower >= tiny]
    assert all(upper % 25 == 0 for _, upper in ours[-2:])  # the new size's grid from there on
    assert all(b[0] == a[1] for a, b in zip(ours, ours[1:], strict=False))  # no gap, no overlap


def test_orm_saves_find_their_partition(tiny, source):
    letters = [DeadLetter.objects.create(source=source, position=f"orm-{n}") for n in range(25)]
    assert len({partition_of(letter.pk) for letter in letters}) == 3
    assert DeadLetterKey.objects.filter(source_key=source.pk).count() == 25


def test_partitions_ensure_keeps_one_whole_spare_partition(tiny):
    assert partitions_ensure() == []  # the fixture's call made them
    with connection.cursor() as cursor:
        current = partition_sql.last_id(cursor)
    assert bounds()[-1][0] > current


def test_retention_drops_a_partition_whose_every_row_may_go_and_deletes_rows_elsewhere(tiny, source):
    old = NOW - timedelta(days=40)
    whole = dead_letters_store(source=source, batch=messages(0, SIZE, failed_at=old)).inserted_ids
    mixed = dead_letters_store(source=source, batch=messages(SIZE, SIZE, failed_at=old)).inserted_ids
    current = dead_letters_store(source=source, batch=messages(2 * SIZE, 3, failed_at=old)).inserted_ids
    assert len({partition_of(pk) for pk in whole}) == 1 and partition_of(whole[0]) != partition_of(mixed[0])
    DeadLetterState.objects.filter(pk__in=whole + mixed + current).update(status="resolved")
    DeadLetterState.objects.filter(pk=mixed[3]).update(status="new")  # a survivor: the partition stays
    job = RedriveJob.objects.create(status="completed")
    RedriveAttempt.objects.create(job=job, dead_letter_id=whole[0], status="succeeded")  # history
    DeadLetterRevision.objects.create(dead_letter_id=whole[1], payload=b"edited")
    other = Source.objects.create(connection=source.connection, name="other", mode="dlq_stream", address="O")
    DeadLetter.objects.create(source=other, position="young", status="resolved", failed_at=NOW)

    assert retention_purge(days=30, now=NOW) == 2 * SIZE - 1 + 3

    kept, dropped = partition_of(mixed[3]), f"{partition_sql.LETTERS}_p{whole[0] // SIZE * SIZE}"
    assert dropped not in _partition_names() and kept in _partition_names()
    assert list(DeadLetter.objects.filter(source=source).values_list("pk", flat=True)) == [mixed[3]]
    assert set(DeadLetterKey.objects.values_list("dead_letter_id", flat=True)) == set(
        DeadLetterState.objects.values_list("pk", flat=True)
    )
    assert not RedriveAttempt.objects.exists() and not DeadLetterRevision.objects.exists()
    assert counter_totals()[(source.pk, CounterName.PURGED)] == 2 * SIZE - 1 + 3
    assert (other.pk, CounterName.PURGED) not in counter_totals()
    assert {status: n for status, n in status_counts().items() if n} == {"new": 1, "resolved": 1}
    event = AuditEvent.objects.get(action="retention.purge")
    assert event.count == 2 * SIZE + 2
    assert dropped in event.detail["partitions_dropped"] and kept not in event.detail["partitions_dropped"]
    again = dead_letters_store(source=source, batch=messages(0, 2))  # purged positions come back
    assert again.inserted == 2


def test_retention_leaves_a_partition_a_running_job_holds(tiny, source):
    old = NOW - timedelta(days=40)
    ids = dead_letters_store(source=source, batch=messages(0, SIZE, failed_at=old)).inserted_ids
    dead_letters_store(source=source, batch=messages(SIZE, 2))  # the ids move on
    DeadLetterState.objects.filter(pk__in=ids).update(status="failed")
    job = RedriveJob.objects.create(status="running")
    RedriveAttempt.objects.create(job=job, dead_letter_id=ids[0], status="pending", holds=True)

    assert retention_purge(days=30, now=NOW) == SIZE - 1
    assert list(DeadLetter.objects.filter(pk__in=ids).values_list("pk", flat=True)) == [ids[0]]
    assert f"{partition_sql.LETTERS}_p{ids[0] // SIZE * SIZE}" in _partition_names()


def _partition_names() -> set[str]:
    with connection.cursor() as cursor:
        return {p.name for p in partition_sql.partitions(cursor)}


def test_the_beat_task_keeps_the_spare_partition(tiny, settings):
    from dlqadmin import tasks

    assert settings.CELERY_BEAT_SCHEDULE["partitions-ensure"]["task"] == tasks.partitions_ensure.name
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [partition_sql.STATES, tiny + 3 * SIZE]
        )
    # the ids outran the spare: the grid filled up to them, and a spare beyond
    assert tasks.partitions_ensure() == [f"{partition_sql.LETTERS}_p{tiny + k * SIZE}" for k in range(1, 5)]
