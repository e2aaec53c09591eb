"""A NATS advisory source made by a user harvests: created through the API, the dashboard form
or the Django admin, it is prepared on save (its capture stream exists before the first
failure), a consumer exceeding max_deliver and another +TERMing a message are harvested over
HTTP and redriven over HTTP back to their original subjects on the real NATS server."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.test import Client
from django.urls import reverse

from dlqadmin.models import DeadLetter, DeadLetterStatus, Source
from dlqadmin.services.redrive.worker import redrive_job_step
from tests.conftest import NATS_URL
from tests.support.nats import (
    advisory_subjects,
    delete_streams,
    fail_both_ways,
    stored_after,
    users_capture,
    wait_for_advisories,
    work_stream,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def streams():
    created: list[tuple[str, str]] = []
    yield created
    asyncio.run(delete_streams(created))


@pytest.fixture
def connection_id(as_admin) -> int:
    response = as_admin.post(
        "/api/v1/connections/", {"name": "nats-users", "kind": "nats", "url": NATS_URL}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def signed_in(user, *, django_admin: bool = False) -> Client:
    # the Django admin wants staff and model permissions: a transactional test flushed the ones
    # the migrations gave the role groups, so the admin surface signs in as a superuser
    user.is_staff = user.is_superuser = django_admin
    user.save()
    client = Client()
    client.force_login(user)
    return client


def through_api(as_admin, admin_user, connection_id: int, stream: str) -> int:
    body = {"name": stream, "connection": connection_id, "mode": "advisory", "address": stream}
    response = as_admin.post("/api/v1/sources/", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["prepare"]["status"] == "ready"  # the answer already says so
    return response.json()["id"]


def through_dashboard(as_admin, admin_user, connection_id: int, stream: str) -> int:
    client = signed_in(admin_user)
    form = client.get(reverse("dlq-connection-discover", args=[connection_id])).content.decode()
    assert "failures from before the capture existed are lost" in form  # said on the source form
    response = client.post(
        reverse("dlq-source-add", args=[connection_id]),
        {
            "prefix": "m",
            "m-name": stream,
            "m-mode": "advisory",
            "m-address": stream,
            "m-enabled": "on",
            "m-remove_after_harvest": "on",
            "m-max_redrives": "5",
            "m-options_json": "",
        },
        follow=True,
    )
    assert response.status_code == 200 and response.redirect_chain[-1][0] == reverse("dlq-connections")
    page = response.content.decode()
    assert f"Stream DLQADMIN_ADV_{stream} (created by dlqadmin) captures" in page  # the flash
    return Source.objects.get(name=stream).pk


def through_admin(as_admin, admin_user, connection_id: int, stream: str) -> int:
    client = signed_in(admin_user, django_admin=True)
    add = reverse("admin:dlqadmin_source_add")
    assert "failures from before the capture existed are lost" in client.get(add).content.decode()
    response = client.post(
        add,
        {
            "connection": connection_id,
            "name": stream,
            "mode": "advisory",
            "address": stream,
            "options": "{}",
            "enabled": "on",
            "remove_after_harvest": "on",
            "max_redrives": "5",
            "auto_retry_max_attempts": "3",
            "auto_retry_backoff_seconds": "60",
        },
        follow=True,
    )
    assert response.status_code == 200, response.content.decode()[:2000]
    message = f'<li class="info">Source {stream}: stream DLQADMIN_ADV_{stream} (created by dlqadmin) captures'
    assert message in response.content.decode()
    return Source.objects.get(name=stream).pk


@pytest.mark.parametrize("create", [through_api, through_dashboard, through_admin])
def test_an_advisory_source_made_by_a_user_harvests_and_redrives(
    create, as_admin, as_operator, admin_user, connection_id, streams
):
    stream, subject = asyncio.run(work_stream(NATS_URL, streams))
    capture = f"DLQADMIN_ADV_{stream}"
    streams.append((NATS_URL, capture))
    source_id = create(as_admin, admin_user, connection_id, stream)

    source = as_admin.get(f"/api/v1/sources/{source_id}/").json()
    assert (
        source["prepare"]["status"] == "ready" and source["prepare"]["options"]["capture_stream"] == capture
    )
    assert source["last_error"] == "" and source["prepare"]["error"] == ""

    seqs = asyncio.run(fail_both_ways(NATS_URL, stream, subject))
    asyncio.run(wait_for_advisories(NATS_URL, capture, stream, ("MAX_DELIVERIES", "MSG_TERMINATED")))
    response = as_operator.post(f"/api/v1/sources/{source_id}/harvest/")
    assert response.status_code == 200, response.content
    assert response.json()["inserted"] == 2
    response = as_operator.post("/api/v1/redrives/", {"filter": {"source": stream}}, format="json")
    assert response.status_code == 201, response.content
    job = response.json()
    for _ in range(10):  # as the Celery task would
        if not redrive_job_step(job_id=job["id"]).more:
            break
    job = as_operator.get(f"/api/v1/redrives/{job['id']}/").json()
    assert (job["status"], job["succeeded"], job["failed"]) == ("completed", 2, 0), job

    rows = {r.origin_extra["consumer"]: r for r in DeadLetter.objects.filter(source_id=source_id)}
    assert (rows["retrier"].reason, rows["retrier"].origin_seq) == ("max_deliveries", seqs["retrier"])
    assert (rows["validator"].reason, rows["validator"].origin_seq) == ("terminated", seqs["validator"])
    assert {r.status for r in rows.values()} == {DeadLetterStatus.REDRIVEN}
    arrived = asyncio.run(stored_after(NATS_URL, stream, max(seqs.values())))
    assert sorted((m["subject"], m["payload"]) for m in arrived) == [
        (f"{subject}.invalid", b'{"order": 2}'),
        (f"{subject}.retry", b'{"order": 1}'),
    ]
    assert all(b"tenant: acme" in m["raw"] and b"x-retry-count: 1" in m["raw"] for m in arrived)


def test_a_source_created_while_the_broker_is_down_is_stored_with_its_error(as_admin):
    response = as_admin.post(
        "/api/v1/connections/",
        {"name": "nats-down", "kind": "nats", "url": "nats://127.0.0.1:1"},
        format="json",
    )
    body = {
        "name": "orders-adv",
        "connection": response.json()["id"],
        "mode": "advisory",
        "address": "ORDERS",
    }
    response = as_admin.post("/api/v1/sources/", body, format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["prepare"]["status"] == "failed" and created["prepare"]["error"]
    assert created["last_error"] == "not prepared: " + created["prepare"]["error"]
    listed = as_admin.get("/api/v1/sources/").json()["results"]
    assert [s["last_error"] for s in listed] == [created["last_error"]]


def test_the_api_says_which_stream_of_the_users_is_read(as_admin, connection_id, streams):
    stream, _ = asyncio.run(work_stream(NATS_URL, streams))
    mine = asyncio.run(users_capture(NATS_URL, streams, advisory_subjects(stream)))
    body = {"name": stream, "connection": connection_id, "mode": "advisory", "address": stream}
    prepare = as_admin.post("/api/v1/sources/", body, format="json").json()["prepare"]
    assert prepare["options"] == {"capture_stream": mine, "durable": f"dlqadmin-harvester-{stream}"}
    assert prepare["detail"].startswith(f"stream {mine} (not dlqadmin's) already captures")
    assert json.dumps(prepare)  # plain JSON
