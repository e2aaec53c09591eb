"""Harvester replicas store into one source at the same time, with no lock around the source:
each on its own thread and database connection, batches overlapping (a message redelivered to
another replica after a crash) and new error groups appearing in several batches at once. Every
message is stored once, every group counts each stored message once, the source's total is
exact, and no transaction fails (no unique violation on a new group, no deadlock)."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections

from brokers.base import HarvestedMessage, Origin
from dlqadmin.models import DeadLetter, ErrorGroup, Source
from dlqadmin.selectors_dashboard import status_counts
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import dead_letters_store

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
CLASSES = [f"com.acme.Error{i}" for i in range(12)]


def message(n: int) -> HarvestedMessage:
    return HarvestedMessage(
        position=f"DLQ:{n}",
        payload=f'{{"order": {n}}}'.encode(),
        origin=Origin(stream="ORDERS", seq=n),
        reason="dead_letter",
        error_class=CLASSES[n % len(CLASSES)],
        error_message=f"order {n} not found",
        failed_at=T0 + timedelta(seconds=n),
    )


def test_replicas_storing_overlapping_batches_at_once_count_every_message_exactly_once():
    conn = connection_create(name="n", kind="nats", url="nats://127.0.0.1:4222")
    source = Source.objects.create(connection=conn, name="orders-dlq", mode="dlq_stream", address="DLQ")
    total, replicas, batch = 600, 4, 20
    errors: list[BaseException] = []
    start = threading.Barrier(replicas)

    def replica(seed: int) -> None:
        rng = random.Random(seed)
        numbers = list(range(total))
        rng.shuffle(numbers)  # every replica sees every message (all redelivered), in its own order
        try:
            start.wait()
            for i in range(0, total, batch):
                dead_letters_store(source=source, batch=[message(n) for n in numbers[i : i + batch]])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=replica, args=(seed,)) for seed in range(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors

    assert DeadLetter.objects.filter(source=source).count() == total
    expected = {cls: len(range(i, total, len(CLASSES))) for i, cls in enumerate(CLASSES)}
    assert dict(ErrorGroup.objects.values_list("error_class", "count")) == expected
    for group in ErrorGroup.objects.all():
        numbers = [n for n in range(total) if CLASSES[n % len(CLASSES)] == group.error_class]
        assert (group.first_seen, group.last_seen) == (
            T0 + timedelta(seconds=min(numbers)),
            T0 + timedelta(seconds=max(numbers)),
        )
    source.refresh_from_db()
    assert source.harvested_total == total
    counts = status_counts()  # the dashboard tallies (trigger delta rows)
    assert counts["new"] == total and sum(counts.values()) == total
    assert set(DeadLetter.objects.values_list("error_group__error_class", flat=True)) == set(CLASSES)
