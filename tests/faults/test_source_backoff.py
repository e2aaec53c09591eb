"""One failing source never stops the others: in one ``manage.py harvest --follow`` process, a
source whose broker refuses every connection, a source whose stored credential can no longer be
decrypted (the encryption key was rotated) and a source whose queue is exclusive to another
connection (a transient error of that source alone, on the healthy source's own connection) each
back off on their own, exponentially, and show their last error, while a healthy source keeps
storing new dead letters within seconds."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time

import aio_pika
import pytest
from cryptography.fernet import Fernet

from dlqadmin.models import Connection, Source
from tests.api.conftest import token_client
from tests.conftest import AMQP_URL, unique
from tests.faults.helpers import queue_state, stored
from tests.support import rabbit
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MAX_BACKOFF = 4.0
WINDOW = 8.0  # seconds of steady dead-lettering into the healthy source


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def exclusive_queue(name: str):
    """``name`` declared exclusive by a connection of its own for the block: any other
    connection is refused with RESOURCE_LOCKED (a transient error)."""
    ready, done = threading.Event(), threading.Event()

    async def hold() -> None:
        conn = await aio_pika.connect(AMQP_URL, login="guest", password="guest")
        async with conn:
            await (await conn.channel()).declare_queue(name, exclusive=True)
            ready.set()
            await asyncio.to_thread(done.wait)

    holder = threading.Thread(target=lambda: asyncio.run(hold()), daemon=True)
    holder.start()
    assert ready.wait(10)
    try:
        yield
    finally:
        done.set()
        holder.join(10)


def api_source(as_admin, url: str, queue: str, connection: int | None = None) -> Source:
    if connection is None:
        conn = {
            "name": unique("conn"),
            "kind": "rabbitmq",
            "url": url,
            "username": "guest",
            "password": "guest",
        }
        response = as_admin.post("/api/v1/connections/", conn, format="json")
        assert response.status_code == 201, response.content
        connection = response.json()["id"]
    body = {"name": queue, "connection": connection, "mode": "queue", "address": queue}
    response = as_admin.post("/api/v1/sources/", body, format="json")
    assert response.status_code == 201, response.content
    return Source.objects.get(pk=response.json()["id"])


async def dead_letter_one(top: rabbit.Topology, body: bytes) -> None:
    """Publish one message to the work queue and reject it into the DLQ (no waiting on the DLQ:
    the harvester may take it at once)."""
    conn = await aio_pika.connect(AMQP_URL, login="guest", password="guest")
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        await ch.default_exchange.publish(aio_pika.Message(body), routing_key=top.work_queue)
        work = await ch.get_queue(top.work_queue, ensure=False)
        msg = await work.get(no_ack=False, timeout=5)
        await msg.reject(requeue=False)


def retry_delays(log: str, source: Source) -> list[float]:
    pattern = rf"source {re.escape(source.name)}: harvest failed .*?\(attempt (\d+)\); retrying in ([\d.]+)s"
    found = [(int(n), float(delay)) for n, delay in re.findall(pattern, log)]
    assert [n for n, _ in found] == list(range(1, len(found) + 1)), found
    return [delay for _, delay in found]


def test_failing_sources_back_off_on_their_own_while_a_healthy_source_keeps_its_pace(harvesters, admin_user):
    as_admin = token_client(admin_user)
    top = rabbit.dead_letter(1)  # the healthy DLQ, with one dead letter waiting
    locked_queue = unique("locked-dlq")
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(rabbit.delete, top)
        cleanup.enter_context(exclusive_queue(locked_queue))
        healthy = api_source(as_admin, AMQP_URL, top.dlq)
        locked = api_source(as_admin, AMQP_URL, locked_queue, connection=healthy.connection_id)
        refused = api_source(as_admin, f"amqp://127.0.0.1:{closed_port()}/", unique("nobody-dlq"))
        rotated = api_source(as_admin, AMQP_URL, unique("rotated-dlq"))
        # the credential was encrypted under a key this process no longer has
        old_key = Fernet(Fernet.generate_key()).encrypt(b"guest").decode()
        Connection.objects.filter(pk=rotated.connection_id).update(password_encrypted=old_key)

        proc = harvesters([healthy.name, locked.name, refused.name, rotated.name], max_backoff=MAX_BACKOFF)
        assert wait_until(lambda: stored(healthy) == 1, 30), proc.log()[-3000:]

        # new dead letters keep arriving in the healthy DLQ; each is stored within seconds
        latencies, started = [], time.monotonic()
        while time.monotonic() - started < WINDOW:
            sent = time.monotonic()
            # a distinct body each time: identical messages dying in one second share a position
            asyncio.run(dead_letter_one(top, f"live-{len(latencies)}".encode()))
            ok = wait_until(lambda n=len(latencies) + 2: stored(healthy) == n, 5)
            assert ok, (stored(healthy), latencies, queue_state(AMQP_URL, top.dlq), proc.output()[-3000:])
            latencies.append(time.monotonic() - sent)
        assert proc.alive(), proc.log()[-3000:]
        assert max(latencies) < 3, latencies

        log = proc.output()
        for failing in (locked, refused, rotated):
            delays = retry_delays(log, failing)
            # 0.5 s doubling up to MAX_BACKOFF: a handful of attempts in the window, not hundreds
            schedule = [min(MAX_BACKOFF, 0.5 * 2**i) for i in range(len(delays))]
            assert 3 <= len(delays) <= 7 and delays == schedule, (failing.name, delays)

        # the last error is the source's, visible through the API
        shown = {s["name"]: s for s in as_admin.get("/api/v1/sources/").json()["results"]}
        assert "cannot be decrypted with DLQADMIN_ENCRYPTION_KEY" in shown[rotated.name]["last_error"]
        assert "RESOURCE_LOCKED" in shown[locked.name]["last_error"]
        assert shown[refused.name]["last_error"] and not shown[healthy.name]["last_error"]
        assert stored(refused) == stored(rotated) == stored(locked) == 0
        # the locked queue's failures are its own: its connection (the healthy one's) was never
        # backed off nor marked unhealthy
        assert f"connection {healthy.connection.name}:" not in log
        assert as_admin.get(f"/api/v1/connections/{healthy.connection_id}/").json()["last_error"] == ""
        assert proc.stop() == 0
