"""Three follow-mode harvester replicas on one source, one of them killed with -9 mid-run.

The brokers share the work: a Kafka consumer group whose partitions the replicas split
(cooperative-sticky), RabbitMQ competing consumers on the DLQ, one NATS durable every replica
fetches from. After the kill the broker hands what the dead replica held to the others; every
dead letter is stored exactly once and every count (the source's total, the error groups) is
exact. Each replica's heartbeat says what it holds.
"""

from __future__ import annotations

import socket
import time

import pytest
from django.db.models import Sum

from dlqadmin.models import ErrorGroup, Heartbeat, Source
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

BATCH = 25


def instance(proc) -> str:
    return f"{socket.gethostname()}:{proc.pid}"


def heartbeat(proc) -> dict:
    row = Heartbeat.objects.filter(component="harvester", instance=instance(proc)).first()
    return row.details if row is not None else {}


def exactly_once(source, count: int) -> None:
    assert stored(source) == count
    assert distinct_positions(source) == count
    source.refresh_from_db()
    assert source.harvested_total == count
    total = ErrorGroup.objects.filter(source=source).aggregate(n=Sum("count"))["n"]
    assert total == count, f"error groups count {total} for {count} stored"


def test_kafka_replicas_split_the_partitions_and_take_over_a_killed_ones(harvesters, client, viewer):
    topic, partitions, half = unique("dlt"), 6, 600
    kafka_create_topic(KAFKA_BOOTSTRAP, topic, partitions)
    try:
        group = unique("grp")
        conn = connection_create(name=unique("kafka"), kind="kafka", url=KAFKA_BOOTSTRAP)
        source = Source.objects.create(
            connection=conn,
            name=topic,
            mode="topic",
            address=topic,
            options={"batch_size": BATCH, "group_id": group, "session_timeout": 6},
        )
        replicas = [harvesters(source) for _ in range(3)]

        def held():
            return [heartbeat(proc).get("partitions", {}).get(topic, []) for proc in replicas]

        # the group settles with each replica holding two of the six partitions
        assert wait_until(lambda: sorted(len(p) for p in held()) == [2, 2, 2], 90, 0.2), held()
        assert sorted(p for ps in held() for p in ps) == list(range(partitions))

        kafka_dead_letters(KAFKA_BOOTSTRAP, topic, half, partitions=partitions)
        assert wait_until(lambda: stored(source) >= half // 2, 60), stored(source)
        victim, survivors = replicas[0], replicas[1:]
        lost = heartbeat(victim)["partitions"][topic]
        victim.kill9()
        killed_at = time.monotonic()
        # records for every partition, the dead replica's too: only a takeover stores them
        ends = kafka_dead_letters(KAFKA_BOOTSTRAP, topic, half, partitions=partitions, start=half)

        assert wait_until(lambda: stored(source) >= 2 * half, 90, 0.2), (stored(source), held())
        took = time.monotonic() - killed_at

        def taken():
            return sorted(
                p for proc in survivors for p in heartbeat(proc).get("partitions", {}).get(topic, [])
            )

        # the survivors' heartbeats (every 5 s) show the dead replica's partitions among theirs
        assert wait_until(lambda: taken() == list(range(partitions)), 15, 0.2), (lost, taken())
        assert took < 6 + 30, f"the survivors took {took:.0f}s to take over"
        exactly_once(source, 2 * half)
        assert wait_until(lambda: kafka_committed(KAFKA_BOOTSTRAP, group, topic, partitions) == ends, 30, 0.5)

        # the connections page and /metrics show each replica: the dead one stopped, the others
        # running with the partitions they hold now
        client.force_login(viewer)
        victim_row = f'data-instance="{instance(victim)}" data-running="false"'
        assert wait_until(lambda: victim_row in client.get("/connections/").content.decode(), 30, 0.5)
        page = client.get("/connections/").content.decode()
        for proc in survivors:
            assert f'data-instance="{instance(proc)}" data-running="true"' in page
        metrics = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
        assert f'dlqadmin_harvester_replica_up{{instance="{instance(victim)}"}} 0.0' in metrics
        held_now = 0
        for proc in survivors:
            assert f'dlqadmin_harvester_replica_up{{instance="{instance(proc)}"}} 1.0' in metrics
            line = (
                f'dlqadmin_harvester_replica_partitions_held{{instance="{instance(proc)}",source="{topic}"}} '
            )
            held_now += int(float(metrics.split(line, 1)[1].split()[0]))
        assert held_now == partitions

        # a disabled source's partitions are given up at once (the replicas leave its group)
        Source.objects.filter(pk=source.pk).update(enabled=False)
        for proc in survivors:
            assert wait_until(lambda proc=proc: "(holding [])" in proc.output(), 15, 0.2), proc.output()[
                -1500:
            ]
        assert wait_until(lambda: not taken(), 15, 0.2), taken()
        stop_cleanly(survivors)
        assert all("stopped_at" in heartbeat(proc) for proc in survivors)
    finally:
        kafka_delete_topic(KAFKA_BOOTSTRAP, topic)


def test_rabbitmq_replicas_compete_for_the_dlq_and_a_killed_ones_messages_come_back(harvesters):
    count = 1500
    top = rabbit.dead_letter(count)
    try:
        conn = connection_create(
            name=unique("rmq"), kind="rabbitmq", url=AMQP_URL, username="guest", password="guest"
        )
        source = Source.objects.create(
            connection=conn, name=top.dlq, mode="queue", address=top.dlq, options={"batch_size": BATCH}
        )
        replicas = harvest_until(harvesters, source, 300, replicas=3)
        replicas[0].kill9()
        assert stored(source) < count, "drained before the kill; the test proves nothing"
        assert wait_until(lambda: stored(source) >= count, 60, 0.2), stored(source)
        exactly_once(source, count)
        # both survivors took their share, and nothing is left unacked or ready
        assert wait_until(lambda: all(heartbeat(proc).get("stored", 0) > 0 for proc in replicas[1:]), 10)
        stop_cleanly(replicas[1:])
        assert queue_state(AMQP_URL, top.dlq) == (0, 0)
    finally:
        rabbit.delete(top)


def test_nats_replicas_fetch_one_durable_and_a_killed_ones_messages_are_redelivered(harvesters, nats_streams):
    count = 600
    spec, _ = nats_advisory_dead_letters(NATS_URL, count, nats_streams)
    conn = connection_create(name=unique("nats"), kind="nats", url=NATS_URL)
    source = Source.objects.create(
        connection=conn,
        name=spec.name,
        mode="advisory",
        address=spec.address,
        options={"batch_size": BATCH, "ack_wait": 2},
    )
    replicas = harvest_until(harvesters, source, 100, replicas=3)
    replicas[0].kill9()
    assert stored(source) < count, "drained before the kill; the test proves nothing"
    assert wait_until(lambda: stored(source) >= count, 60, 0.2), stored(source)
    exactly_once(source, count)
    stop_cleanly(replicas[1:])
    assert nats_consumer_state(NATS_URL, spec) == (0, 0)
