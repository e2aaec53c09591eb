"""The plan tells the truth about where each message goes, against the real brokers.

* A Kafka DLT written by a library dlqadmin has no convention for (kafkajs-async-retry
  dead-letters a record with only the application's own headers): the plan says the records need
  a destination, a job without one is refused (or skips them, with the reason, among others), and
  with an override topic they are redriven and arrive there.
* RabbitMQ dead letters republished like Spring AMQP's ``RepublishMessageRecoverer`` (original
  exchange and routing key, no queue): the plan says "original exchange X, routing key Y" and the
  API, the dashboard, the admin bulk action and the automatic retry all deliver every one to the
  queue bound there.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse

from dlqadmin.models import AuditEvent, DeadLetter, RedriveAttempt, RedriveJob, Source
from dlqadmin.services.maintenance import auto_retry_run
from tests.api.test_end_to_end import set_up_rabbitmq_source, set_up_source
from tests.conftest import KAFKA_BOOTSTRAP, unique
from tests.support import kafka, rabbit
from tests.support.jobs import run_to_end

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/redrives/"
KAFKA_NEEDS = "needs a destination: no original topic is recorded; give a destination topic"


def harvest(client, source: dict, count: int) -> None:
    response = client.post(f"/api/v1/sources/{source['id']}/harvest/")
    assert response.status_code == 200, response.content
    assert response.json()["inserted"] == count


def plan(client, source: dict, **options) -> dict:
    response = client.post(
        URL, {"filter": {"source": source["name"]}, "dry_run": True, **options}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def drive(job_id: int) -> RedriveJob:
    return run_to_end(RedriveJob.objects.get(pk=job_id))


# --------------------------------------------------------------------------------------------
# Kafka: no recognisable origin


def kafkajs_dead_letters(topic: str, count: int, prefix: bytes = b"order-") -> list[bytes]:
    """What kafkajs-async-retry writes to ``<group>-dlq`` for a ``DeadLetter`` error: key, value
    and the application's own headers, nothing about where the record came from."""
    values = [b'{"order": "%s"}' % (prefix + str(i).encode()) for i in range(count)]
    records = [
        kafka.Record(v, b"k-%d" % i, [("tenant", b"acme"), ("traceparent", b"00-4bf92f35-00f067aa-01")])
        for i, v in enumerate(values)
    ]
    kafka.produce(topic, records)
    return values


@pytest.fixture
def kafkajs_dlt(as_admin):
    group = unique("orders-svc")
    dlq, replay = f"{group}-dlq", unique("orders-replay")
    kafka.create_topics(dlq, replay)
    source = set_up_source(as_admin, kind="kafka", url=KAFKA_BOOTSTRAP, name=dlq, mode="topic", address=dlq)
    return source, replay


def test_a_kafka_dlt_without_origin_needs_a_destination_until_one_is_given(as_operator, kafkajs_dlt):
    source, replay = kafkajs_dlt
    values = kafkajs_dead_letters(source["address"], 3)
    harvest(as_operator, source, 3)

    dry = plan(as_operator, source)
    assert (dry["total"], dry["redrivable"], dry["needs_destination"]) == (3, 0, 3)
    assert dry["routes"] == {"origin": 0, "original_route": 0, "override": 0, "needs_destination": 3}
    (row,) = dry["destinations"]
    assert (row["route"], row["reason"], row["count"]) == ("needs_destination", KAFKA_NEEDS, 3)

    refused = as_operator.post(URL, {"filter": {"source": source["name"]}}, format="json")
    assert refused.status_code == 400, refused.content
    assert "3 selected message(s) need a destination" in refused.json()["fields"]["destination"]
    assert not RedriveJob.objects.exists()
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {"new"}

    override = {"destination": {"topic": replay}}
    dry = plan(as_operator, source, **override)
    assert (dry["redrivable"], dry["needs_destination"]) == (3, 0)
    assert dry["destinations"] == [
        {
            "kind": "kafka",
            "source": source["name"],
            "route": "override",
            "destination": replay,
            "reason": "",
            "count": 3,
        }
    ]
    created = as_operator.post(URL, {"filter": {"source": source["name"]}, **override}, format="json")
    assert created.status_code == 201, created.content
    job = drive(created.json()["id"])
    assert (job.status, job.succeeded, job.failed, job.skipped) == ("completed", 3, 0, 0)
    arrived = kafka.read_topic(replay, 3)
    assert sorted(a.value for a in arrived) == sorted(values)
    assert all(dict(a.headers)["tenant"] == b"acme" for a in arrived)


def test_a_job_over_mixed_records_skips_those_without_origin_and_says_why(as_operator, kafkajs_dlt):
    source, _ = kafkajs_dlt
    original = unique("orders")
    kafka.create_topics(original)
    kafkajs_dead_letters(source["address"], 2, prefix=b"lost-")
    kafka.produce(
        source["address"],
        [kafka.Record(b"known-%d" % i, None, kafka.spring_headers(original, 0, i)) for i in range(3)],
    )
    harvest(as_operator, source, 5)

    dry = plan(as_operator, source)
    assert (dry["total"], dry["redrivable"], dry["needs_destination"]) == (5, 3, 2)
    assert {(d["route"], d["destination"], d["count"]) for d in dry["destinations"]} == {
        ("origin", original, 3),
        ("needs_destination", "needs a destination", 2),
    }

    created = as_operator.post(URL, {"filter": {"source": source["name"]}}, format="json")
    assert created.status_code == 201, created.content
    assert (created.json()["total"], created.json()["skipped"]) == (5, 2)
    assert created.json()["skipped_reasons"] == [{"reason": KAFKA_NEEDS, "count": 2}]
    job = drive(created.json()["id"])
    assert (job.succeeded, job.failed, job.skipped) == (3, 0, 2)
    skipped = RedriveAttempt.objects.filter(job=job, status="skipped")
    assert set(skipped.values_list("error", flat=True)) == {KAFKA_NEEDS}
    assert set(skipped.values_list("dead_letter__status", flat=True)) == {"new"}  # left for a person
    assert sorted(a.value for a in kafka.read_topic(original, 3)) == [b"known-0", b"known-1", b"known-2"]


# --------------------------------------------------------------------------------------------
# RabbitMQ: Spring AMQP RepublishMessageRecoverer (original exchange + routing key, no queue)


@pytest.fixture
def spring_dlq(as_admin):
    top = rabbit.spring_republished(3)
    source = set_up_rabbitmq_source(as_admin, top)
    yield top, source
    rabbit.delete(top)


def original_route(top) -> str:
    return f"original exchange '{top.exchange}', routing key '{top.routing_key}'"


def assert_delivered(top, count: int = 3) -> None:
    arrived = rabbit.drain(top.work_queue)
    assert sorted(m.body for m in arrived) == sorted(b"spring-%d" % i for i in range(count))
    assert all(m.headers["x-retry-count"] == 1 and m.headers["tenant"] == "acme" for m in arrived)
    assert all(m.headers["x-original-exchange"] == top.exchange for m in arrived)


def test_spring_republished_dead_letters_go_back_through_the_original_route_via_the_api(
    as_operator, spring_dlq
):
    top, source = spring_dlq
    harvest(as_operator, source, 3)
    stored = DeadLetter.objects.filter(source_id=source["id"])
    assert {(d.origin_queue, d.origin_exchange, d.origin_routing_key) for d in stored} == {
        ("", top.exchange, top.routing_key)
    }

    dry = plan(as_operator, source)
    assert (dry["redrivable"], dry["needs_destination"]) == (3, 0)
    assert dry["routes"]["original_route"] == 3
    assert [(d["route"], d["destination"], d["count"]) for d in dry["destinations"]] == [
        ("original_route", original_route(top), 3)
    ]
    created = as_operator.post(URL, {"filter": {"source": source["name"]}}, format="json")
    assert created.status_code == 201, created.content
    job = drive(created.json()["id"])
    assert (job.succeeded, job.failed, job.skipped) == (3, 0, 0)
    destinations = set(job.attempts.values_list("destination", flat=True))
    assert destinations == {f"exchange={top.exchange!r} routing_key={top.routing_key!r}"}
    assert_delivered(top)


def test_spring_republished_dead_letters_are_redriven_from_the_dashboard(as_operator, operator, spring_dlq):
    top, source = spring_dlq
    harvest(as_operator, source, 3)
    client = Client()
    client.force_login(operator)
    body = client.get("/redrive/", {"source": source["name"]}).content.decode()
    assert "<strong data-plan-count>3</strong> of 3" in body
    assert original_route(top).replace("'", "&#x27;") in body
    assert "no queue is recorded for them" in body and "data-needs-destination" not in body
    pinned = body.split('name="filter" value="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    response = client.post(
        "/redrive/",
        {"confirm": "1", "select_all": "1", "filter": pinned, "batch_size": "100", "copy_original": "on"},
    )
    job = RedriveJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("dlq-job", args=[job.pk])
    job = run_to_end(job)
    assert (job.succeeded, job.failed) == (3, 0)
    assert_delivered(top)


def test_spring_republished_dead_letters_are_redriven_by_the_admin_bulk_action(as_operator, spring_dlq):
    top, source = spring_dlq
    harvest(as_operator, source, 3)
    staff = Client()
    staff.force_login(staff_operator())
    ids = list(DeadLetter.objects.filter(source_id=source["id"]).values_list("pk", flat=True))
    response = staff.post(
        reverse("admin:dlqadmin_deadletter_changelist"),
        {"action": "redrive_selected", "_selected_action": ids},
        follow=True,
    )
    assert "started for 3 message(s) (0 skipped)" in response.content.decode()
    job = run_to_end(RedriveJob.objects.get())
    assert (job.succeeded, job.failed) == (3, 0)
    assert_delivered(top)


def test_automatic_retry_delivers_spring_republished_dead_letters(as_admin, as_operator, spring_dlq):
    top, source = spring_dlq
    response = as_admin.patch(
        f"/api/v1/sources/{source['id']}/",
        {"auto_retry": True, "auto_retry_backoff_seconds": 0},
        format="json",
    )
    assert response.status_code == 200, response.content
    harvest(as_operator, source, 3)
    (job_id,) = auto_retry_run()
    job = drive(job_id)
    assert (job.total, job.succeeded, job.failed) == (3, 3, 0)
    assert_delivered(top)
    assert Source.objects.get(pk=source["id"]).auto_retry_held == 0


# --------------------------------------------------------------------------------------------
# The admin bulk action and the automatic retry with messages that need a destination


def staff_operator():
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(unique("staff"), password="pass-123-word", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="operator")[0])
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_deadletter"]))
    return user


def test_the_admin_bulk_action_says_how_many_it_could_not_send_and_why(as_operator, kafkajs_dlt):
    source, _ = kafkajs_dlt
    kafkajs_dead_letters(source["address"], 2)
    harvest(as_operator, source, 2)
    staff = Client()
    staff.force_login(staff_operator())
    ids = list(DeadLetter.objects.values_list("pk", flat=True))
    response = staff.post(
        reverse("admin:dlqadmin_deadletter_changelist"),
        {"action": "redrive_selected", "_selected_action": ids},
        follow=True,
    )
    page = response.content.decode()
    assert "Redrive not started: destination: 2 selected message(s) need a destination" in page
    assert "no original topic is recorded" in page and "destination override" in page
    assert not RedriveJob.objects.exists()


def test_the_admin_bulk_action_sends_the_others_and_reports_the_ones_it_skipped(as_operator, kafkajs_dlt):
    source, _ = kafkajs_dlt
    original = unique("orders")
    kafka.create_topics(original)
    kafkajs_dead_letters(source["address"], 2)
    kafka.produce(source["address"], [kafka.Record(b"known", None, kafka.spring_headers(original, 0, 7))])
    harvest(as_operator, source, 3)
    staff = Client()
    staff.force_login(staff_operator())
    ids = list(DeadLetter.objects.values_list("pk", flat=True))
    response = staff.post(
        reverse("admin:dlqadmin_deadletter_changelist"),
        {"action": "redrive_selected", "_selected_action": ids},
        follow=True,
    )
    page = response.content.decode()
    assert "started for 1 message(s) (2 skipped)" in page
    assert f"Not sent: 2 message(s): {KAFKA_NEEDS}" in page
    job = run_to_end(RedriveJob.objects.get())
    assert (job.succeeded, job.failed, job.skipped) == (1, 0, 2)
    assert [a.value for a in kafka.read_topic(original, 1)] == [b"known"]


def test_automatic_retry_never_sends_a_message_that_needs_a_destination_and_says_so_once(
    as_admin, as_operator, kafkajs_dlt
):
    source, _ = kafkajs_dlt
    response = as_admin.patch(
        f"/api/v1/sources/{source['id']}/",
        {"auto_retry": True, "auto_retry_backoff_seconds": 0},
        format="json",
    )
    assert response.status_code == 200, response.content
    kafkajs_dead_letters(source["address"], 2)
    harvest(as_operator, source, 2)

    assert auto_retry_run() == [] and auto_retry_run() == []
    assert not RedriveJob.objects.exists() and not RedriveAttempt.objects.exists()
    (event,) = AuditEvent.objects.filter(action="policy.auto_retry.held")
    assert event.count == 2 and event.detail["reason"] == KAFKA_NEEDS
    assert as_admin.get(f"/api/v1/sources/{source['id']}/").json()["auto_retry_held"] == 2
