"""End to end over HTTP against the real brokers: create a connection and a source, harvest
genuine dead letters, redrive them by filter, drive the job while polling its progress, and find
the messages back at their original destination on the broker."""

import asyncio
import time

import pytest

from dlqadmin.models import DeadLetter, DeadLetterStatus
from dlqadmin.services.redrive.worker import redrive_job_step
from tests.brokers.contract import Sent
from tests.brokers.kafka import test_contract as kafka_support
from tests.brokers.nats import test_contract as nats_support
from tests.conftest import AMQP_URL, KAFKA_BOOTSTRAP, NATS_URL
from tests.support import rabbit

pytestmark = pytest.mark.django_db(transaction=True)


def set_up_source(as_admin, *, kind: str, url: str, name: str, mode: str, address: str, **extra) -> dict:
    conn = {"name": f"{kind}-{name}", "kind": kind, "url": url, **extra}
    response = as_admin.post("/api/v1/connections/", conn, format="json")
    assert response.status_code == 201, response.content
    body = {"name": name, "connection": response.json()["id"], "mode": mode, "address": address}
    if kind == "kafka":
        body["options"] = {"group_id": f"{name}-grp", "idle_timeout": 2.0}
    response = as_admin.post("/api/v1/sources/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def set_up_rabbitmq_source(as_admin, top: rabbit.Topology) -> dict:
    """A RabbitMQ connection and a source on ``top``'s DLQ (named after it), through the API."""
    return set_up_source(
        as_admin,
        kind="rabbitmq",
        url=AMQP_URL,
        name=top.dlq,
        mode="queue",
        address=top.dlq,
        username="guest",
        password="guest",
    )


def harvest_redrive_and_drive(as_operator, source: dict, count: int) -> dict:
    """Harvest over HTTP, redrive by filter over HTTP, then run the job's steps (as the Celery
    task would) while polling its progress; returns the final job."""
    response = as_operator.post(f"/api/v1/sources/{source['id']}/harvest/")
    assert response.status_code == 200, response.content
    assert response.json()["inserted"] == count

    listed = as_operator.get(f"/api/v1/messages/?source={source['name']}&status=new").json()["results"]
    assert len(listed) == count

    dry = as_operator.post(
        "/api/v1/redrives/", {"filter": {"source": source["name"]}, "dry_run": True}, format="json"
    )
    assert dry.json()["redrivable"] == count and dry.json()["busy"] == 0

    response = as_operator.post(
        "/api/v1/redrives/", {"filter": {"source": source["name"]}, "batch_size": 2}, format="json"
    )
    assert response.status_code == 201, response.content
    job = response.json()
    assert job["total"] == count and job["filter"]["source"] == [source["name"]] and "max_id" in job["filter"]

    seen_progress = []
    for _ in range(50):
        step = redrive_job_step(job_id=job["id"])
        job = as_operator.get(f"/api/v1/redrives/{job['id']}/").json()
        seen_progress.append(job["progress"]["done"])
        if not step.more:
            break
    assert job["status"] == "completed", job
    assert (job["succeeded"], job["failed"], job["failures"]) == (count, 0, [])
    assert job["progress"]["remaining"] == 0 and job["progress"]["percent"] == 100.0
    assert job["progress"]["rate_per_second"] > 0
    assert seen_progress == sorted(seen_progress) and seen_progress[0] < count  # batches of 2
    rows = DeadLetter.objects.filter(source_id=source["id"])
    assert set(rows.values_list("status", flat=True)) == {DeadLetterStatus.REDRIVEN}
    detail = as_operator.get(f"/api/v1/messages/{rows[0].pk}/").json()
    attempt = detail["history"]["redrive_attempts"][0]
    assert attempt["job"] == job["id"] and attempt["outcome"] == "succeeded" and attempt["destination"]
    return job


def test_rabbitmq_harvest_redrive_by_filter_arrives_on_the_original_queue(as_admin, as_operator):
    top = rabbit.dead_letter(5, payload_prefix=b"e2e-")
    try:
        source = set_up_rabbitmq_source(as_admin, top)
        harvest_redrive_and_drive(as_operator, source, 5)
        arrived = rabbit.drain(top.work_queue)
        assert sorted(m.body for m in arrived) == sorted(b"e2e-%d" % i for i in range(5))
        assert all(m.headers["x-retry-count"] == 1 and m.headers["tenant"] == "acme" for m in arrived)
        assert rabbit.drain(top.dlq, wait=0.1) == []  # harvest took them off the DLQ
    finally:
        rabbit.delete(top)


def test_kafka_harvest_redrive_by_filter_arrives_on_the_original_topic(as_admin, as_operator):
    contract = kafka_support.TestKafkaContract()
    sent = [Sent(b'{"order": %d}' % i, b"order-%d" % i, {"tenant": "acme"}) for i in range(4)]
    spec = asyncio.run(contract.dead_letter(sent))
    source = set_up_source(
        as_admin, kind="kafka", url=KAFKA_BOOTSTRAP, name=spec.address, mode="topic", address=spec.address
    )
    harvest_redrive_and_drive(as_operator, source, 4)
    arrived = asyncio.run(contract.read_redriven(spec, 4))
    assert sorted(a.payload for a in arrived) == sorted(s.payload for s in sent)
    assert sorted(a.key for a in arrived) == sorted(s.key for s in sent)
    assert all(dict(a.headers)["tenant"] == b"acme" for a in arrived)


def test_nats_harvest_redrive_by_filter_arrives_on_the_original_subject(as_admin, as_operator):
    contract = nats_support.TestNatsDlqStreamContract()
    contract.created = []
    try:
        sent = [Sent(b"nats-%d" % i, None, {"tenant": "acme"}) for i in range(3)]
        spec = asyncio.run(contract.dead_letter(sent))
        source = set_up_source(
            as_admin, kind="nats", url=NATS_URL, name=spec.address, mode="dlq_stream", address=spec.address
        )
        started = time.monotonic()
        harvest_redrive_and_drive(as_operator, source, 3)
        arrived = asyncio.run(contract.read_redriven(spec, 3))
        assert sorted(a.payload for a in arrived) == [s.payload for s in sent]
        assert all(("tenant", "acme") in a.headers for a in arrived)
        assert time.monotonic() - started < 30
    finally:
        asyncio.run(nats_support.delete_streams(contract.created))
