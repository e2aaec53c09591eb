"""Many sources on one harvester (issue 18): 30 sources over the three brokers, created through
the API and watched by ONE ``manage.py harvest --follow`` with its default poll interval. While
all of them are idle, a dead letter on any one of them is listed by the API within 2 s: an idle
source costs the round almost nothing (passes of one connection run concurrently, a Kafka
member does not wait on an idle topic), so the round stays short. SIGTERM still stops it fast."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import aio_pika
import nats
import pytest
from nats.js.api import StreamConfig

from dlqadmin.models import DeadLetterState
from tests.api.conftest import token_client
from tests.conftest import AMQP_URL, unique
from tests.support import kafka
from tests.support.nats import NATS_URL
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PER_BROKER = 10
TARGET = 2.0


class Topology:
    """PER_BROKER queues, topics and DLQ streams; one dead letter at a time on any of them."""

    def __init__(self):
        tag = unique("many").replace("-", "_").replace(".", "_")
        self.queues = [f"{tag}.q{i}" for i in range(PER_BROKER)]
        self.topics = [f"{tag}.t{i}-dlt" for i in range(PER_BROKER)]
        self.streams = [f"{tag.upper()}_S{i}" for i in range(PER_BROKER)]
        self.sent = 0

    def subject(self, stream: str) -> str:
        return f"{stream.lower()}.dlq"

    async def _rabbit(self, fn):
        conn = await aio_pika.connect(AMQP_URL, login="guest", password="guest")
        async with conn:
            return await fn(await conn.channel(publisher_confirms=True))

    async def _nats(self, fn):
        nc = await nats.connect(NATS_URL)
        try:
            return await fn(nc.jetstream(timeout=10))
        finally:
            await nc.close()

    def create(self) -> None:
        async def queues(ch):
            for queue in self.queues:
                await ch.declare_queue(queue, durable=True)

        async def streams(js):
            for stream in self.streams:
                await js.add_stream(StreamConfig(name=stream, subjects=[self.subject(stream)]))

        asyncio.run(self._rabbit(queues))
        kafka.create_topics(*self.topics)
        asyncio.run(self._nats(streams))

    def delete(self) -> None:
        async def queues(ch):
            for queue in self.queues:
                await ch.queue_delete(queue)

        async def streams(js):
            for stream in self.streams:
                with contextlib.suppress(Exception):
                    await js.delete_stream(stream)

        with contextlib.suppress(Exception):
            asyncio.run(self._rabbit(queues))
        with contextlib.suppress(Exception):
            asyncio.run(self._nats(streams))
        for future in kafka.admin().delete_topics(self.topics).values():
            with contextlib.suppress(Exception):
                future.result(10)

    def dead_letter(self, kind: str, address: str) -> None:
        """What the broker / the failing consumer does: one message lands in the DLQ."""
        self.sent += 1
        body = f'{{"order": {self.sent}}}'.encode()
        if kind == "rabbitmq":

            async def publish(ch):
                await ch.default_exchange.publish(aio_pika.Message(body), routing_key=address)

            asyncio.run(self._rabbit(publish))
        elif kind == "kafka":
            kafka.produce(address, [kafka.Record(body)])
        else:
            asyncio.run(self._nats(lambda js: js.publish(self.subject(address), body)))


@pytest.fixture
def topology():
    top = Topology()
    top.create()
    yield top
    top.delete()


def test_one_harvester_on_30_idle_sources_shows_a_new_dead_letter_within_2s(harvesters, topology, admin_user):
    as_admin = token_client(admin_user)
    kinds = {
        "rabbitmq": {"url": AMQP_URL, "username": "guest", "password": "guest"},
        "kafka": {"url": kafka.BOOTSTRAP},
        "nats": {"url": NATS_URL},
    }
    connections = {}
    for kind, settings in kinds.items():
        response = as_admin.post(
            "/api/v1/connections/", {"name": unique(kind), "kind": kind, **settings}, format="json"
        )
        assert response.status_code == 201, response.content
        connections[kind] = response.json()["id"]
    addresses = [
        *(("rabbitmq", "queue", q) for q in topology.queues),
        *(("kafka", "topic", t) for t in topology.topics),
        *(("nats", "dlq_stream", s) for s in topology.streams),
    ]
    sources = {}  # (kind, address) -> source id
    for kind, mode, address in addresses:
        body = {"name": unique("src"), "connection": connections[kind], "mode": mode, "address": address}
        if kind == "kafka":
            body["options"] = {"group_id": f"{address}.dlqadmin"}
        response = as_admin.post("/api/v1/sources/", body, format="json")
        assert response.status_code == 201, response.content
        sources[(kind, address)] = (response.json()["id"], response.json()["name"])

    def listed(pk: int) -> int:
        response = as_admin.get("/api/v1/messages/", {"source": pk})
        assert response.status_code == 200, response.content
        return len(response.json()["results"])

    proc = harvesters([name for _, name in sources.values()], poll_interval=0.5)  # the default
    proc.wait_for_log("Harvesting continuously", 60)
    # warm-up: one dead letter everywhere (connections open, every Kafka group joined)
    for kind, address in sources:
        topology.dead_letter(kind, address)
    ids = [pk for pk, _ in sources.values()]

    def warm() -> bool:  # read from the database: 30 sources polled over the API hit its throttle
        stored = DeadLetterState.objects.filter(source_id__in=ids).values("source_id").distinct()
        return stored.count() == len(ids)

    assert wait_until(warm, 60, interval=0.2), proc.log()[-3000:]
    assert all(listed(pk) == 1 for pk in ids)  # and the API shows each

    time.sleep(3)  # every source idle again for a few rounds
    waited = {}
    for kind, address in [
        ("rabbitmq", topology.queues[7]),
        ("kafka", topology.topics[4]),
        ("nats", topology.streams[9]),
    ]:
        pk, _ = sources[(kind, address)]
        started = time.monotonic()
        topology.dead_letter(kind, address)
        assert wait_until(lambda pk=pk: listed(pk) == 2, 10, interval=0.02), f"{kind}: not listed in 10 s"
        waited[kind] = time.monotonic() - started
        time.sleep(0.7)
    assert all(seconds <= TARGET for seconds in waited.values()), waited

    proc.proc.send_signal(signal.SIGTERM)
    assert wait_until(lambda: not proc.alive(), 15), "SIGTERM did not stop the harvester within 15 s"
    assert "Harvester stopped cleanly." in proc.log()
