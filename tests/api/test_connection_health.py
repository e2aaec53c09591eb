"""Connection health from what the harvester, the redrive workers and the beat check see (not
only from "Test connection"), with its age on the connections page, in the API and /metrics."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client

from dlqadmin import tasks
from dlqadmin.models import Connection, DeadLetter
from dlqadmin.services import connection_health
from dlqadmin.services.harvest.follow import Harvester
from dlqadmin.services.redrive.worker import redrive_job_step
from tests.conftest import AMQP_URL, NATS_URL, unique
from tests.support import rabbit

pytestmark = pytest.mark.django_db(transaction=True)

CONNECTIONS, SOURCES = "/api/v1/connections/", "/api/v1/sources/"


@pytest.fixture(autouse=True)
def fresh_observations():
    connection_health._written.clear()
    yield
    connection_health._written.clear()


def add(client, *, kind="rabbitmq", url=AMQP_URL, source: dict | None = None) -> tuple[dict, dict | None]:
    body = {"name": unique(kind), "kind": kind, "url": url}
    if kind == "rabbitmq":
        body.update(username="guest", password="guest")
    conn = client.post(CONNECTIONS, body, format="json")
    assert conn.status_code == 201, conn.content
    made = None
    if source is not None:
        response = client.post(SOURCES, {"connection": conn.json()["id"], **source}, format="json")
        assert response.status_code == 201, response.content
        made = response.json()
    return conn.json(), made


def harvest_pass(*names: str) -> int:
    """One pass of the real follow-mode harvester over ``names``."""

    async def one() -> int:
        harvester = Harvester(source_names=list(names))
        try:
            return await harvester.run_once()
        finally:
            await harvester.close()
            await sync_to_async(connections.close_all, thread_sensitive=True)()  # its thread's

    return asyncio.run(one())


def page(user) -> str:
    client = Client()
    client.force_login(user)
    response = client.get("/connections/")
    assert response.status_code == 200
    return response.content.decode()


def test_a_harvested_source_marks_its_connection_healthy_and_says_how_long_ago(
    as_admin, as_operator, admin_user, settings
):
    top = rabbit.dead_letter(2)
    try:
        conn, source = add(as_admin, source={"name": unique("src"), "mode": "queue", "address": top.dlq})
        assert as_admin.get(f"{CONNECTIONS}{conn['id']}/").json()["health_status"] == "unknown"
        assert harvest_pass(source["name"]) == 2

        body = as_admin.get(f"{CONNECTIONS}{conn['id']}/").json()
        assert body["health_status"] == "ok" and body["health_checked_by"] == "harvester"
        assert 0 <= body["health_age_seconds"] < 30 and body["last_error"] == ""
        html = page(admin_user)
        assert "s ago, by the harvester" in html
        metrics = Client().get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
        assert f'dlqadmin_broker_up{{connection="{conn["name"]}",kind="rabbitmq"}} 1.0' in metrics
        assert (
            f'dlqadmin_broker_health_age_seconds{{checked_by="harvester",connection="{conn["name"]}",'
            'kind="rabbitmq"}' in metrics
        )
        # rate-limited: the next passes within DLQADMIN_HEALTH_RECORD_SECONDS write nothing
        stamp = Connection.objects.get(pk=conn["id"]).last_checked_at
        harvest_pass(source["name"])
        assert Connection.objects.get(pk=conn["id"]).last_checked_at == stamp

        # a redrive worker's confirmed publish is evidence too
        settings.DLQADMIN_HEALTH_RECORD_SECONDS = 0
        ids = list(DeadLetter.objects.filter(source_id=source["id"]).values_list("id", flat=True))
        job = as_operator.post("/api/v1/redrives/", {"ids": ids}, format="json")
        assert job.status_code == 201, job.content
        while redrive_job_step(job_id=job.json()["id"]).more:
            pass
        body = as_admin.get(f"{CONNECTIONS}{conn['id']}/").json()
        assert body["health_status"] == "ok" and body["health_checked_by"] == "redrive worker"
    finally:
        rabbit.delete(top)


def test_an_unreachable_connection_shows_the_failure_and_its_cause(as_admin, admin_user):
    conn, source = add(
        as_admin, url="amqp://127.0.0.1:1/", source={"name": unique("src"), "mode": "queue", "address": "q"}
    )
    harvest_pass(source["name"])
    body = as_admin.get(f"{CONNECTIONS}{conn['id']}/").json()
    assert body["health_status"] == "error" and body["health_checked_by"] == "harvester"
    assert "connect call failed" in body["last_error"].lower(), body  # the cause, not just "down"
    html = page(admin_user)
    assert "Unreachable" in html and "by the harvester" in html
    assert body["last_error"][:40] in html.replace("&#x27;", "'").replace("&quot;", '"')
    metrics = Client().get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert f'dlqadmin_broker_up{{connection="{conn["name"]}",kind="rabbitmq"}} 0.0' in metrics


def test_the_beat_check_asks_about_idle_connections_only(as_admin, admin_user):
    schedule = {entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    assert "dlqadmin.tasks.connections_check_idle" in schedule
    idle, _ = add(as_admin, kind="nats", url=NATS_URL)  # no source: no harvester ever reads it
    down, _ = add(as_admin, kind="nats", url="nats://127.0.0.1:1")
    busy, _ = add(as_admin)
    connection_health.connection_observe(connection_id=busy["id"], ok=True, by="harvester")

    assert tasks.connections_check_idle() == 2  # the task beat runs
    rows = {c.pk: c for c in Connection.objects.all()}
    assert rows[idle["id"]].health_status == "ok" and rows[idle["id"]].health_checked_by == "beat check"
    assert rows[down["id"]].health_status == "error" and rows[down["id"]].last_error
    assert rows[busy["id"]].health_checked_by == "harvester"  # recently seen: not asked again
    assert "by the beat check" in page(admin_user)
    assert tasks.connections_check_idle() == 0  # all fresh now
