"""A broker stopped while the follow-mode harvester works on it, then started again.

Each broker is a PRIVATE instance on free ports (never the shared services). While it is down
the harvester keeps running and records a clear status: ``Connection.health_status == "error"``
with the cause in ``last_error`` (what the connections page shows) and ``Source.last_error``.
After the restart it recovers on its own (health ``ok`` again, the source error cleared) and
harvests what the broker kept plus dead letters that happen after the restart: nothing lost,
nothing stored twice.
"""

from __future__ import annotations

import asyncio

import pytest

from dlqadmin.models import Connection, DeadLetter, HealthStatus, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import source_harvest
from tests.conftest import KAFKA_BOOTSTRAP, unique
from tests.faults.helpers import (
    distinct_positions,
    harvest_until,
    kafka_committed,
    kafka_create_topic,
    kafka_dead_letters,
    kafka_delete_topic,
    nats_advisory_dead_letters,
    nats_consumer_state,
    nats_fail_more,
    queue_state,
    rabbit_at,
    stop_cleanly,
    stored,
)
from tests.support import rabbit
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def health(conn: Connection) -> tuple[str, str]:
    conn.refresh_from_db()
    return conn.health_status, conn.last_error


def wait_for_outage(conn: Connection, source: Source, proc, mentions: str, timeout: float = 40) -> str:
    """Wait until the harvester has recorded the outage (health error, ``last_error`` naming
    ``mentions``); returns the connection's last_error."""

    def down():
        status, error = health(conn)
        return status == HealthStatus.ERROR and mentions in error

    assert wait_until(down, timeout, 0.2), (
        health(conn),
        proc.log()[-3000:],
    )
    source.refresh_from_db()
    assert source.last_error and source.last_error_at, "the source shows why it is not harvesting"
    assert proc.alive(), f"the harvester must survive a broker outage\n{proc.log()[-3000:]}"
    return conn.last_error


def wait_for_recovery(conn: Connection, source: Source, expected: int, proc, timeout: float = 60) -> None:
    def recovered():
        return health(conn)[0] == HealthStatus.OK and stored(source) >= expected

    assert wait_until(recovered, timeout, 0.2), (health(conn), stored(source), proc.log()[-3000:])
    assert conn.last_error == ""
    assert wait_until(lambda: Source.objects.get(pk=source.pk).last_error == "", 10, 0.1)


def test_rabbitmq_node_restart_during_harvest(private_rabbit, harvesters):
    count, later, batch = 3000, 30, 10  # small batches: the harvest is still running when the node stops
    with rabbit_at(private_rabbit.url):
        top = rabbit.dead_letter(count)
    conn = connection_create(
        name=unique("rmq-private"),
        kind="rabbitmq",
        url=private_rabbit.url,
        username="guest",
        password="guest",
    )
    source = Source.objects.create(
        connection=conn, name=top.dlq, mode="queue", address=top.dlq, options={"batch_size": batch}
    )
    [proc] = harvest_until(harvesters, source, 100)
    private_rabbit.stop()
    at_stop = stored(source)
    assert at_stop < count, "the harvest was over before the broker stopped; the test proves nothing"

    error = wait_for_outage(conn, source, proc, mentions=f"127.0.0.1:{private_rabbit.port}")
    assert "connect" in error.lower(), error
    assert stored(source) < count  # nothing comes from a stopped broker

    private_rabbit.start()
    wait_for_recovery(conn, source, count, proc)
    with rabbit_at(private_rabbit.url):  # dead letters that happen after the restart
        asyncio.run(rabbit._dead_letter_into(top, later, payload_prefix=b"after-"))
    assert wait_until(lambda: stored(source) >= count + later, 30), stored(source)
    stop_cleanly([proc])
    assert stored(source) == distinct_positions(source) == count + later
    assert queue_state(private_rabbit.url, top.dlq) == (0, 0)  # nothing left, nothing unacked
    bodies = set(DeadLetter.objects.filter(source=source).values_list("payload", flat=True))
    assert {bytes(b) for b in bodies} == {f"msg-{i}".encode() for i in range(count)} | {
        f"after-{i}".encode() for i in range(later)
    }


def test_nats_server_restart_during_harvest(private_nats, harvesters, nats_streams):
    count, later, batch = 1500, 40, 25
    spec, subject = nats_advisory_dead_letters(private_nats.url, count, nats_streams)
    conn = connection_create(name=unique("nats-private"), kind="nats", url=private_nats.url)
    source = Source.objects.create(
        connection=conn,
        name=spec.name,
        mode="advisory",
        address=spec.address,
        options={"batch_size": batch, "ack_wait": 2},
    )
    [proc] = harvest_until(harvesters, source, 200)
    private_nats.stop()  # same port and JetStream store directory when it comes back
    assert stored(source) < count, "the harvest was over before the server stopped; the test proves nothing"

    wait_for_outage(conn, source, proc, mentions=f"cannot connect to NATS at {private_nats.url}")

    private_nats.start()
    wait_for_recovery(conn, source, count, proc)
    asyncio.run(nats_fail_more(private_nats.url, spec, subject, later, start=count))
    assert wait_until(lambda: stored(source) >= count + later, 30), stored(source)
    stop_cleanly([proc])
    assert stored(source) == distinct_positions(source) == count + later
    assert wait_until(lambda: nats_consumer_state(private_nats.url, spec) == (0, 0), 10)
    payloads = {bytes(p) for p in DeadLetter.objects.filter(source=source).values_list("payload", flat=True)}
    assert payloads == {f"job-{i}".encode() for i in range(count + later)}


def test_kafka_broker_restart_during_harvest(private_tansu, harvesters):
    """tansu keeps nothing across a restart: the broker comes back as a new, empty cluster (as
    Apache Kafka would after losing its log dirs and being re-formatted). What was harvested
    stays stored; the harvester notices the outage, keeps running, and harvests the new
    cluster's dead letters."""
    count, later = 200, 50
    topic, group = unique("dlt"), unique("grp")
    kafka_create_topic(private_tansu.bootstrap, topic)
    kafka_dead_letters(private_tansu.bootstrap, topic, count)
    first_cluster = private_tansu.cluster_id
    conn = connection_create(name=unique("kafka-private"), kind="kafka", url=private_tansu.bootstrap)
    source = Source.objects.create(
        connection=conn,
        name=topic,
        mode="topic",
        address=topic,
        options={"batch_size": 50, "group_id": group},
    )
    [proc] = harvest_until(harvesters, source, count)
    private_tansu.stop()

    wait_for_outage(conn, source, proc, mentions=f"topic {topic!r}")

    private_tansu.start()  # empty, new cluster id
    kafka_create_topic(private_tansu.bootstrap, topic)
    ends = kafka_dead_letters(private_tansu.bootstrap, topic, later, start=count)
    wait_for_recovery(conn, source, count + later, proc, timeout=75)
    stop_cleanly([proc])
    assert stored(source) == distinct_positions(source) == count + later
    rows = DeadLetter.objects.filter(source=source)
    assert rows.filter(position__startswith=f"{first_cluster}/").count() == count
    assert rows.filter(position__startswith=f"{private_tansu.cluster_id}/").count() == later
    assert kafka_committed(private_tansu.bootstrap, group, topic, 1) == ends


def test_kafka_topic_that_lost_its_records_still_harvests_new_dead_letters():
    """The same-cluster-id variant of the restart above, cheaply: on the shared broker, delete
    and re-create the topic (its committed offsets go with it, as on Apache Kafka), then
    dead-letter three new records. They land on offsets 0..2 again."""
    topic = unique("dlt")
    kafka_create_topic(KAFKA_BOOTSTRAP, topic)
    try:
        kafka_dead_letters(KAFKA_BOOTSTRAP, topic, 3)
        conn = connection_create(name=unique("kafka"), kind="kafka", url=KAFKA_BOOTSTRAP)
        source = Source.objects.create(
            connection=conn, name=topic, mode="topic", address=topic, options={"group_id": unique("grp")}
        )
        assert source_harvest(source=source).inserted == 3
        kafka_delete_topic(KAFKA_BOOTSTRAP, topic)

        def recreated():
            try:
                kafka_create_topic(KAFKA_BOOTSTRAP, topic)
            except Exception:  # noqa: BLE001 - deletion still in progress
                return False
            return True

        assert wait_until(recreated, 15, 0.2)
        kafka_dead_letters(KAFKA_BOOTSTRAP, topic, 3, start=100)
        report = source_harvest(source=source)
        assert report.received == 3
        assert report.inserted == 3, f"{report.duplicates} new dead letters taken for stored ones"
    finally:
        kafka_delete_topic(KAFKA_BOOTSTRAP, topic)
