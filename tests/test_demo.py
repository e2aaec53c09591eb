"""`make demo` and its parts, against real brokers (no mocks).

1. ``seed_demo`` + ``brokers.simulate``: bounded traffic on the system RabbitMQ, Kafka-protocol
   broker and NATS (2.9.10, which ignores ``+TERM`` reasons), under a unique prefix; the harvest
   command stores it with the right reasons, origins and several error groups.
2. ``scripts/demo.py`` itself in a subprocess (temporary state and free ports): it creates and
   starts its embedded PostgreSQL, serves HTTP, harvests dead letters from its embedded NATS and
   Kafka into that database, and Ctrl-C leaves no process.
3. The embedded PostgreSQL alone: a second start reuses the cluster and its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import aio_pika
import nats
import psycopg
import pytest
from confluent_kafka.admin import AdminClient
from django.core.management import call_command

from brokers import headers as header_codec
from brokers import simulate
from devtools.demo import postgres
from devtools.demo.supervisor import Supervisor
from dlqadmin.models import AuditEvent, DeadLetter, ErrorGroup, Source
from dlqadmin.services.decoding import payload_decode
from tests.conftest import AMQP_URL, KAFKA_BOOTSTRAP, NATS_URL

ROOT = Path(__file__).resolve().parent.parent


def unique_prefix(what: str) -> str:
    return f"t-{what}-{os.urandom(4).hex()}"


# --------------------------------------------------------------------------------------------
# Clean-up of the broker resources a test created


async def _delete_rabbitmq(prefix: str) -> None:
    n = simulate.rabbitmq_names(prefix)
    async with await aio_pika.connect(AMQP_URL, timeout=10) as conn:
        ch = await conn.channel()
        for queue in (n.queue, n.dlq, n.reservations, n.audit):
            await ch.queue_delete(queue)
        for exchange in (n.exchange, n.dlx):
            await ch.exchange_delete(exchange)


async def _delete_nats(url: str, prefix: str) -> None:
    stream = simulate.nats_names(prefix).stream
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for name in (stream, f"DLQADMIN_ADV_{stream}"):
            with contextlib.suppress(Exception):
                await js.delete_stream(name)
    finally:
        await nc.close()


def _delete_kafka(bootstrap: str, prefix: str) -> None:
    n = simulate.kafka_names(prefix)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics([n.payments, n.payments_dlt, n.customers, n.connect_dlq]).values():
        with contextlib.suppress(Exception):
            future.result(10)


# --------------------------------------------------------------------------------------------
# 1. seed_demo + simulate + harvest


@pytest.fixture
def seeded_prefix():
    prefix = unique_prefix("seed")
    yield prefix
    asyncio.run(_delete_rabbitmq(prefix))
    asyncio.run(_delete_nats(NATS_URL, prefix))
    _delete_kafka(KAFKA_BOOTSTRAP, prefix)


async def _traffic(prefix: str, count: int) -> list[Counter]:
    common = {"prefix": prefix, "rate": 25.0, "count": count, "seed": 7}
    return await asyncio.gather(
        simulate.rabbitmq_traffic(AMQP_URL, **common),
        simulate.kafka_traffic(KAFKA_BOOTSTRAP, **common),
        simulate.nats_traffic(NATS_URL, **common),
    )


def _harvest_until(expected: dict[str, int], timeout: float = 30.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        call_command("harvest", stdout=io.StringIO())
        stored = {name: DeadLetter.objects.filter(source__name=name).count() for name in expected}
        if all(stored[name] >= n for name, n in expected.items()) or time.monotonic() > deadline:
            return stored
        time.sleep(0.5)


@pytest.mark.django_db(transaction=True)
def test_seeded_demo_traffic_is_harvested_with_reasons_origins_and_error_groups(seeded_prefix):
    prefix = seeded_prefix
    out = io.StringIO()
    call_command(
        "seed_demo",
        rabbitmq_url=AMQP_URL,
        kafka_bootstrap=KAFKA_BOOTSTRAP,
        nats_url=NATS_URL,
        prefix=prefix,
        stdout=out,
    )
    assert set(Source.objects.values_list("name", flat=True)) == {
        "orders-dlq",
        "payments-dlt",
        "connect-dlq",
        "shipments-advisories",
    }
    # Written through the services: validated and audited as the system (no actor).
    assert AuditEvent.objects.filter(action="source.create", actor=None).count() == 4
    # Idempotent: a second run changes nothing and creates nothing.
    call_command("seed_demo", rabbitmq_url=AMQP_URL, nats_url=NATS_URL, prefix=prefix, stdout=io.StringIO())
    assert Source.objects.count() == 4
    assert AuditEvent.objects.filter(action="source.create").count() == 4

    rabbit, kafka, nats_caused = asyncio.run(_traffic(prefix, count=12))
    expected = {
        "orders-dlq": sum(rabbit.values()),
        "payments-dlt": kafka["spring"],
        "connect-dlq": kafka["connect"],
        "shipments-advisories": sum(nats_caused.values()),
    }
    assert all(expected.values()), expected
    stored = _harvest_until(expected)
    assert stored == expected

    r = simulate.rabbitmq_names(prefix)
    orders = DeadLetter.objects.filter(source__name="orders-dlq")
    by_reason = {row.reason: row for row in orders.exclude(reason="")}
    assert {"rejected", "expired", "maxlen"} <= set(by_reason)
    assert by_reason["rejected"].origin_queue == r.queue
    assert by_reason["expired"].origin_queue == r.reservations
    assert by_reason["maxlen"].origin_queue == r.audit
    assert {row.origin_exchange for row in orders} == {r.exchange}
    recovered = orders.exclude(error_message="")  # Spring AMQP RepublishMessageRecoverer
    assert recovered.count() == rabbit["recovered"]
    assert all(row.stacktrace.startswith("org.springframework.amqp") for row in recovered)

    k = simulate.kafka_names(prefix)
    payments = DeadLetter.objects.filter(source__name="payments-dlt")
    assert {row.origin_topic for row in payments} == {k.payments}
    assert all(row.error_class and row.error_message for row in payments)
    assert all(bytes(row.key).startswith(b"order-") for row in payments)
    # decodable payloads: the Avro payments (stored schema) and the gzip orders
    avro = [
        row for row in payments if header_codec.get_text(row.headers, "content-type") == "application/avro"
    ]
    assert avro and all(
        payload_decode(row).chain == "Avro com.acme.payments.PaymentRequested (payments-avro)" for row in avro
    )
    # the declared gzip bodies decode; the undeclared "gzip" garbage says why it does not
    gzipped = [row for row in orders if (row.properties or {}).get("content_encoding") == "gzip"]
    assert gzipped and all(payload_decode(row).chain == "gzip → JSON" for row in gzipped)
    connect = DeadLetter.objects.filter(source__name="connect-dlq")
    assert {row.origin_topic for row in connect} == {k.customers}
    assert all(row.error_class.startswith("org.apache.kafka.connect.errors.") for row in connect)

    stream = simulate.nats_names(prefix).stream
    shipments = DeadLetter.objects.filter(source__name="shipments-advisories")
    assert Counter(shipments.values_list("reason", flat=True)) == {
        "max_deliveries": nats_caused["max_deliveries"],
        "terminated": nats_caused["terminated"],
    }
    assert {row.origin_stream for row in shipments} == {stream}
    assert all(row.payload_available and row.payload for row in shipments)

    groups = Counter(ErrorGroup.objects.values_list("source__name", flat=True))
    assert groups["orders-dlq"] >= 4, groups  # rejected, expired, maxlen + recoverer exceptions
    assert groups["payments-dlt"] >= 2 and groups["connect-dlq"] >= 1 and groups["shipments-advisories"] >= 2
    assert ErrorGroup.objects.count() < DeadLetter.objects.count()  # ids and numbers were merged


def test_seed_demo_refuses_to_run_without_any_broker():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="at least one of"):
        call_command("seed_demo", stdout=io.StringIO())


# --------------------------------------------------------------------------------------------
# 2. scripts/demo.py end to end


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc), however deep."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _demo_database_url(state: Path, port: int) -> str | None:
    """The embedded PostgreSQL's URL, from the password the demo generated (None before that)."""
    try:
        lines = (state / "secrets.env").read_text().splitlines()
    except OSError:
        return None
    password = dict(line.partition("=")[::2] for line in lines if "=" in line).get("DEMO_DB_PASSWORD")
    return password and f"postgres://postgres:{password}@127.0.0.1:{port}/dlqadmin"


def _stored_per_source(url: str | None) -> dict[str, int]:
    if not url:
        return {}
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            rows = conn.execute(
                "SELECT s.name, COUNT(d.id) FROM dlqadmin_source s "
                "JOIN dlqadmin_deadletterstate d ON d.source_id = s.id GROUP BY s.name"
            ).fetchall()
    except psycopg.Error:
        return {}  # not started or not migrated yet
    return dict(rows)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find every child")
def test_demo_serves_harvests_embedded_brokers_and_ctrl_c_leaves_no_process(tmp_path):
    port, pg_port = _free_port(), _free_port()
    prefix = unique_prefix("demo")
    state = tmp_path / "state"
    env = {
        **os.environ,
        "DEMO_STATE_DIR": str(state),
        "DEMO_PORT": str(port),
        "DEMO_NATS_PORT": str(_free_port()),
        "DEMO_KAFKA_PORT": str(_free_port()),
        "DEMO_PG_PORT": str(pg_port),
        "DEMO_PREFIX": prefix,
        "DEMO_RATE": "5",
        "DEMO_REDIS_URL": "off",  # the Redis-less path; also keeps clear of a running demo's Redis db
    }
    env.pop("DATABASE_URL")  # the suite's: the demo runs on its own embedded PostgreSQL
    log = tmp_path / "demo.out"
    children: set[int] = set()
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "demo.py")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120  # initdb, migrations, two brokers, first harvests
        stored: dict[str, int] = {}
        ready = False
        while time.monotonic() < deadline:
            assert demo.poll() is None, f"demo exited early:\n{log.read_text()}"
            stored = _stored_per_source(_demo_database_url(state, pg_port))
            ready = _answers(f"http://127.0.0.1:{port}/healthz")
            if ready and all(stored.get(s) for s in ("payments-dlt", "connect-dlq", "shipments-advisories")):
                break
            time.sleep(0.5)
        else:
            pytest.fail(
                f"no harvested dead letters from embedded Kafka and NATS: {stored}\n{log.read_text()}"
            )
        output = log.read_text()
        assert f"Open http://127.0.0.1:{port}/" in output
        assert "log in as demo / " in output
        assert re.search(r"\[--\] Redis +none", output), output
        assert re.search(
            rf"\[ok\] PostgreSQL +embedded PostgreSQL 18 on 127.0.0.1:{pg_port}.*new cluster", output
        )
        with psycopg.connect(_demo_database_url(state, pg_port)) as conn:
            assert conn.execute("SHOW server_version").fetchone()[0].startswith("18.")
            assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert json.load(response) == {"status": "ok"}
        for asset, kind in [("css/dlqadmin.css", "text/css"), ("admin/css/base.css", "text/css")]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/{asset}", timeout=5) as response:
                assert response.status == 200 and response.headers["Content-Type"].startswith(kind), asset

        children |= _descendants(demo.pid)
        assert len(children) >= 8, children  # postgres, nats, kafka, web, worker, beat, harvester, traffic
        started = time.monotonic()
        demo.send_signal(signal.SIGINT)
        assert demo.wait(20) == 0, log.read_text()
        while any(_running(pid) for pid in children) and time.monotonic() - started < 20:
            time.sleep(0.2)
        assert not [pid for pid in children if _running(pid)], log.read_text()
        assert "Demo stopped." in log.read_text()
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
        for pid in children:
            if _running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if "[ok] RabbitMQ" in log.read_text():
            asyncio.run(_delete_rabbitmq(prefix))


# --------------------------------------------------------------------------------------------
# 3. The embedded PostgreSQL on its own


def test_the_embedded_postgresql_keeps_its_data_from_one_start_to_the_next(tmp_path):
    from devtools.demo.main import start_postgres

    embedded = postgres.Embedded(tmp_path / "state" / "pgdata", _free_port(), "pw-" + os.urandom(6).hex())
    sup = Supervisor(env=dict(os.environ), logs=tmp_path)
    try:
        start_postgres(embedded, sup)
        assert (tmp_path / "initdb.log").exists()
        with psycopg.connect(embedded.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('from the first start')")
        sup.stop()
        (tmp_path / "initdb.log").unlink()

        start_postgres(embedded, sup)  # the same cluster: no initdb, the row is there
        assert not (tmp_path / "initdb.log").exists()
        with psycopg.connect(embedded.url) as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [("from the first start",)]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(embedded.url.replace(embedded.password, "wrong"), connect_timeout=5)
        server = sup.children[0].process
    finally:
        sup.stop()
    assert server.returncode == 0  # a clean (fast) shutdown, not a kill
