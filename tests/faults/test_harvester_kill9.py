"""kill -9 of the follow-mode harvester in the middle of a large batch, then a restart.

For each broker: every dead letter ends up in Postgres exactly once, and the broker holds
nothing unacknowledged afterwards (RabbitMQ queue empty with no consumer, the NATS durable has
nothing pending or unacked, the Kafka group's committed offsets reached the end of the topic).
The shared brokers are used with uniquely named resources; nothing is stopped but our process.
"""

from __future__ import annotations

import pytest

from dlqadmin.models import Source
from dlqadmin.services.connections import connection_create
from tests.conftest import AMQP_URL, KAFKA_BOOTSTRAP, NATS_URL, unique
from tests.faults.helpers import (
    distinct_positions,
    harvest_until,
    kafka_committed,
    kafka_create_topic,
    kafka_dead_letters,
    kafka_delete_topic,
    nats_advisory_dead_letters,
    nats_consumer_state,
    queue_state,
    stop_cleanly,
    stored,
)
from tests.support import rabbit
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

COUNT = 2000
BATCH = 25


def kill_mid_harvest(harvesters, source, at_least: int = 300):
    """Start a harvester, kill -9 it once ``at_least`` rows are stored; returns rows stored."""
    [proc] = harvest_until(harvesters, source, at_least)
    proc.kill9()
    assert proc.proc.returncode == -9
    mid = stored(source)
    assert mid < COUNT, "the harvester finished before it was killed; the test proves nothing"
    return mid


def harvest_rest(harvesters, source, timeout: float = 90):
    restarted = harvest_until(harvesters, source, COUNT, timeout=timeout)
    stop_cleanly(restarted)  # the restarted harvester must stop cleanly on SIGTERM
    assert stored(source) == COUNT
    assert distinct_positions(source) == COUNT
    source.refresh_from_db()
    assert source.harvested_total == COUNT  # counted once each, the redelivered batch not again


def test_rabbitmq_kill9_mid_batch(harvesters):
    top = rabbit.dead_letter(COUNT)
    try:
        conn = connection_create(
            name=unique("rmq"), kind="rabbitmq", url=AMQP_URL, username="guest", password="guest"
        )
        source = Source.objects.create(
            connection=conn, name=top.dlq, mode="queue", address=top.dlq, options={"batch_size": BATCH}
        )
        mid = kill_mid_harvest(harvesters, source)
        # The broker requeues what the dead process held unacked: every row not stored is still
        # there; at most the one batch committed but not yet acked is on both sides.
        assert wait_until(lambda: queue_state(AMQP_URL, top.dlq)[1] == 0, 10)
        assert wait_until(lambda: queue_state(AMQP_URL, top.dlq)[0] >= COUNT - mid, 10)
        ready, _ = queue_state(AMQP_URL, top.dlq)
        assert COUNT - mid <= ready <= COUNT - mid + BATCH, (mid, ready)
        harvest_rest(harvesters, source)
        assert queue_state(AMQP_URL, top.dlq) == (0, 0)  # nothing ready, nothing held by anyone
    finally:
        rabbit.delete(top)


def test_kafka_kill9_mid_batch(harvesters):
    topic, partitions = unique("dlt"), 3
    kafka_create_topic(KAFKA_BOOTSTRAP, topic, partitions)
    try:
        ends = kafka_dead_letters(KAFKA_BOOTSTRAP, topic, COUNT, partitions=partitions)
        assert sum(ends.values()) == COUNT
        group = unique("grp")
        conn = connection_create(name=unique("kafka"), kind="kafka", url=KAFKA_BOOTSTRAP)
        source = Source.objects.create(
            connection=conn,
            name=topic,
            mode="topic",
            address=topic,
            options={"batch_size": BATCH, "group_id": group},
        )
        mid = kill_mid_harvest(harvesters, source)
        committed = kafka_committed(KAFKA_BOOTSTRAP, group, topic, partitions)
        # committed after the sink stored: never ahead of the database
        done = sum(max(0, o) for o in committed.values())
        assert mid - BATCH <= done <= mid, (committed, mid)
        harvest_rest(harvesters, source)
        assert kafka_committed(KAFKA_BOOTSTRAP, group, topic, partitions) == ends
    finally:
        kafka_delete_topic(KAFKA_BOOTSTRAP, topic)


def test_nats_kill9_mid_batch(harvesters, nats_streams):
    spec, _ = nats_advisory_dead_letters(NATS_URL, COUNT, nats_streams)
    conn = connection_create(name=unique("nats"), kind="nats", url=NATS_URL)
    # ack_wait 2 s: what the killed process pulled but never acked is redelivered soon
    source = Source.objects.create(
        connection=conn,
        name=spec.name,
        mode="advisory",
        address=spec.address,
        options={"batch_size": BATCH, "ack_wait": 2},
    )
    mid = kill_mid_harvest(harvesters, source)
    pending, ack_pending = nats_consumer_state(NATS_URL, spec)
    # everything not stored is still on the broker (plus at most the batch stored but not acked)
    assert COUNT - mid <= pending + ack_pending <= COUNT - mid + BATCH, (mid, pending, ack_pending)
    harvest_rest(harvesters, source)
    assert nats_consumer_state(NATS_URL, spec) == (0, 0)
