"""/healthz, /readyz (database and Redis only, never brokers) and /metrics (real harvests and redrives)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import Client

from dlqadmin.models import Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import source_harvest
from dlqadmin.services.heartbeat import heartbeat_beat
from dlqadmin.services.redrive.jobs import redrive_job_create
from dlqadmin.services.redrive.worker import redrive_job_step
from dlqadmin.views import health
from tests.conftest import AMQP_URL
from tests.support import rabbit

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fresh_ready_cache():
    health._ready_cache.clear()
    yield
    health._ready_cache.clear()


def test_healthz_answers_without_touching_anything(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_checks_the_database_and_redis_only_and_names_nothing(client):
    conn = connection_create(name="unreachable-private", kind="rabbitmq", url="amqp://127.0.0.1:1/")
    Source.objects.create(connection=conn, name="on", mode="queue", address="q", enabled=True)
    started = time.monotonic()
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.content
    assert time.monotonic() - started < 1.0  # no broker connection attempt
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
    conn.refresh_from_db()
    assert conn.health_status == "unknown" and conn.last_checked_at is None  # never asked


def test_readyz_is_unavailable_when_redis_is_down_and_says_no_more(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    down = client.get("/readyz")
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "checks": {"database": "ok", "redis": "unavailable"}}


def test_readyz_is_unavailable_when_the_database_is_down():
    """A web process whose database stopped answering (a closed port) leaves the rotation."""
    code = (
        "import django; django.setup(); from django.test import Client; "
        "r = Client().get('/readyz'); print(r.status_code, r.content.decode())"
    )
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/dlqadmin",
        "ALLOWED_HOSTS": "testserver",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    status, body = result.stdout.strip().split(" ", 1)
    assert status == "503", result.stdout + result.stderr
    assert json.loads(body) == {"status": "unavailable", "checks": {"database": "unavailable", "redis": "ok"}}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_are_answered_over_plain_http_when_tls_is_enforced(settings, path):
    settings.SECURE_SSL_REDIRECT = True
    assert Client().get("/messages/").status_code == 301  # the rest is redirected to https
    assert Client(REMOTE_ADDR="127.0.0.1").get(path).status_code == 200


def test_a_disabled_source_does_not_make_the_app_unready(client):
    conn = connection_create(name="gone", kind="rabbitmq", url="amqp://127.0.0.1:1/")
    Source.objects.create(connection=conn, name="off", mode="queue", address="q", enabled=False)
    assert client.get("/readyz").status_code == 200


def test_metrics_reflect_real_harvests_and_redrives(client):
    top = rabbit.dead_letter(3)
    try:
        conn = connection_create(
            name="rmq", kind="rabbitmq", url=AMQP_URL, username="guest", password="guest"
        )
        source = Source.objects.create(connection=conn, name="orders-dlq", mode="queue", address=top.dlq)
        source_harvest(source=source)
        job = redrive_job_create(ids=list(source.dead_letters.values_list("id", flat=True)[:2]))
        while redrive_job_step(job_id=job.pk).more:
            pass
        heartbeat_beat(component="harvester", every=0)
        text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    finally:
        rabbit.delete(top)
    assert 'dlqadmin_dead_letters_harvested_total{kind="rabbitmq",source="orders-dlq"} 3.0' in text
    assert 'dlqadmin_messages_redriven_total{source="orders-dlq"} 2.0' in text
    assert 'dlqadmin_dead_letters{source="orders-dlq",status="redriven"} 2.0' in text
    assert 'dlqadmin_dead_letters{source="orders-dlq",status="new"} 1.0' in text
    assert 'dlqadmin_redrive_jobs{status="completed"} 1.0' in text
    assert 'dlqadmin_source_backlog{kind="rabbitmq",source="orders-dlq"} 0.0' in text
    assert 'dlqadmin_component_up{component="harvester"} 1.0' in text
    assert 'dlqadmin_component_up{component="worker"}' in text


def test_metrics_are_refused_to_strangers_and_open_to_the_token(settings):
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 403
    settings.DLQADMIN_METRICS_TOKEN = "scrape-me"
    stranger = Client(REMOTE_ADDR="203.0.113.9")
    assert stranger.get("/metrics").status_code == 403
    assert stranger.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert stranger.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200
