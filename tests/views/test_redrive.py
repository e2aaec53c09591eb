"""Redrive dialog (plan, options, confirm) and job pages (progress, control, failures)."""

import pytest
from django.urls import reverse

from brokers.base import Origin
from dlqadmin.models import DeadLetter, RedriveAttempt, RedriveJob, Source
from tests.views.conftest import harvested

pytestmark = pytest.mark.django_db
URL = "/redrive/"


def test_the_plan_for_a_filter_shows_counts_destinations_and_pins_the_set(as_user, operator, store):
    a, b, c = store(harvested(), harvested(), harvested(retry=3))
    body = as_user(operator).get(URL, {"source": "orders-dlq"}).content.decode()
    assert "<strong data-plan-count>2</strong> of 3 selected messages" in body
    assert "1 parked" in body and "orders.q" in body
    assert f'name="filter" value="source=orders-dlq&amp;max_id={c.pk}"' in body
    assert "Redrive 2 messages" in body and 'name="override_loop_guard"' in body


def test_posted_ticked_rows_show_their_plan(as_user, operator, store):
    a, _b = store(harvested(), harvested())
    body = as_user(operator).post(URL, {"ids": [a.pk]}).content.decode()
    assert "<strong data-plan-count>1</strong> of 1 selected message" in body
    assert f'<input type="hidden" name="ids" value="{a.pk}">' in body
    assert not RedriveJob.objects.exists()


def test_the_plan_warns_when_settled_messages_would_be_sent_again(as_user, operator, store):
    a, _b = store(harvested(), harvested())
    DeadLetter.objects.filter(pk=a.pk).update(status="redriven")
    body = as_user(operator).get(URL, {"source": "orders-dlq"}).content.decode()
    assert "were already redriven, resolved or discarded" in body


def test_an_empty_filter_is_refused(as_user, operator):
    response = as_user(operator).get(URL)
    assert response.status_code == 400 and b"choose messages first" in response.content


def test_confirming_creates_the_job_with_the_chosen_options(as_user, operator, store):
    a, b = store(harvested(), harvested())
    response = as_user(operator).post(
        URL,
        {
            "confirm": "1",
            "ids": [a.pk, b.pk],
            "velocity": "25",
            "batch_size": "10",
            "copy_original": "on",
            "strip": "traceparent, x-b3-",
            "extra": "x-fixed-by=ops\nticket=INC-1",
            "rabbit_route": "exchange",
        },
    )
    job = RedriveJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("dlq-job", args=[job.pk])
    assert (job.total, job.velocity, job.batch_size) == (2, 25.0, 10)
    assert job.destination == {"use_original_route": True}
    assert job.header_policy == {
        "strip": ["traceparent", "x-b3-"],
        "extra": {"x-fixed-by": "ops", "ticket": "INC-1"},
    }
    assert set(RedriveAttempt.objects.values_list("dead_letter_id", flat=True)) == {a.pk, b.pk}
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {"queued"}


def test_confirming_a_filter_redrives_exactly_the_planned_rows(as_user, operator, store):
    shown = store(harvested(), harvested())
    client = as_user(operator)
    body = client.get(URL, {"source": "orders-dlq"}).content.decode()
    pinned = body.split('name="filter" value="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    late = store(harvested())[0]
    client.post(
        URL, {"confirm": "1", "select_all": "1", "filter": pinned, "batch_size": "100", "copy_original": "on"}
    )
    job = RedriveJob.objects.get()
    assert set(job.attempts.values_list("dead_letter_id", flat=True)) == {m.pk for m in shown}
    assert DeadLetter.objects.get(pk=late.pk).status == "new"


def test_bad_options_are_shown_on_the_form(as_user, operator, store):
    a = store(harvested())[0]
    response = as_user(operator).post(
        URL,
        {
            "confirm": "1",
            "ids": [a.pk],
            "velocity": "-3",
            "batch_size": "0",
            "extra": "novalue",
            "rabbit_route": "custom",
        },
    )
    body = response.content.decode()
    assert response.status_code == 400
    assert "velocity must be a number of messages per second from 0.001 to 100000" in body
    assert "batch_size must be an integer from 1 to 1000" in body
    assert "must look like name=value" in body and "give the routing key" in body
    assert not RedriveJob.objects.exists()


def test_numbers_beyond_what_a_broker_takes_are_form_errors(as_user, operator, store):
    a = store(harvested())[0]
    data = {"confirm": "1", "ids": [a.pk], "batch_size": "10", "topic": "t", "partition": str(2**31)}
    response = as_user(operator).post(URL, data)
    assert response.status_code == 400
    assert response.context["form"].errors["partition"] == [
        "Ensure this value is less than or equal to 2147483647."
    ]
    assert not RedriveJob.objects.exists()


def test_a_destination_override_needs_a_single_broker_kind(as_user, operator, store, connection):
    from dlqadmin.services.connections import connection_create

    kafka = connection_create(name="kafka", kind="kafka", url="127.0.0.1:9092")
    topic = Source.objects.create(connection=kafka, name="orders-dlt", mode="topic", address="orders-dlt")
    a = store(harvested())[0]
    b = store(harvested(), into=topic)[0]
    response = as_user(operator).post(
        URL, {"confirm": "1", "ids": [a.pk, b.pk], "batch_size": "5", "topic": "replay"}
    )
    assert response.status_code == 400 and b"applies to one broker kind" in response.content


def test_redriving_messages_already_in_a_job_is_a_conflict(as_user, operator, store):
    a = store(harvested())[0]
    client = as_user(operator)
    client.post(URL, {"confirm": "1", "ids": [a.pk], "batch_size": "5"})
    response = client.post(URL, {"confirm": "1", "ids": [a.pk], "batch_size": "5"})
    assert response.status_code == 409 and b"already in an active redrive job" in response.content
    assert RedriveJob.objects.count() == 1


def test_a_second_job_over_partly_busy_messages_shows_each_busy_one_with_its_job(as_user, operator, store):
    a, b = store(harvested(), harvested())
    client = as_user(operator)
    client.post(URL, {"confirm": "1", "ids": [a.pk], "batch_size": "5"})
    first = RedriveJob.objects.get()
    plan = client.post(URL, {"ids": [a.pk, b.pk]}).content.decode()
    assert "1 busy" in plan and "busy in job #N" in plan
    response = client.post(URL, {"confirm": "1", "ids": [a.pk, b.pk], "batch_size": "5"})
    second = RedriveJob.objects.exclude(pk=first.pk).get()
    assert response.status_code == 302 and (second.total, second.skipped) == (2, 1)
    body = client.get(reverse("dlq-job", args=[second.pk])).content.decode()
    assert f"busy in job #{first.pk}" in body


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_viewer_cannot_redrive(as_user, viewer, store, method):
    a = store(harvested())[0]
    response = getattr(as_user(viewer), method)(URL, {"confirm": "1", "ids": [a.pk], "source": "orders-dlq"})
    assert response.status_code == 403
    assert not RedriveJob.objects.exists()


# ---- jobs -------------------------------------------------------------------------------


@pytest.fixture
def job(as_user, operator, store):
    a, b, c = store(harvested(), harvested(), harvested())
    as_user(operator).post(URL, {"confirm": "1", "ids": [a.pk, b.pk, c.pk], "batch_size": "5"})
    job = RedriveJob.objects.get()
    first, second = job.attempts.order_by("id")[:2]
    RedriveAttempt.objects.filter(pk=first.pk).update(status="succeeded")
    RedriveAttempt.objects.filter(pk=second.pk).update(
        status="failed", error="permanent: NOT_FOUND - no exchange"
    )
    RedriveJob.objects.filter(pk=job.pk).update(status="running", succeeded=1, failed=1)
    job.refresh_from_db()
    return job


def test_the_job_page_shows_progress_counts_and_failures_with_reasons(as_user, viewer, job):
    body = as_user(viewer).get(reverse("dlq-job", args=[job.pk])).content.decode()
    assert "<span data-percent>66.7</span> %" in body
    assert (
        '<dd class="ok-text" data-succeeded>1</dd>' in body
        and '<dd class="error-text" data-failed>1</dd>' in body
    )
    assert "permanent: NOT_FOUND - no exchange" in body
    assert f'data-job-id="{job.pk}"' in body and "js/job.js" in body
    assert "Pause" not in body  # a viewer gets no controls


def test_a_job_still_claiming_says_its_total_is_an_estimate(as_user, viewer, job):
    page = reverse("dlq-job", args=[job.pk])
    assert "<span data-claiming hidden" in as_user(viewer).get(page).content.decode()
    RedriveJob.objects.filter(pk=job.pk).update(claim_cursor=10**9)
    body = as_user(viewer).get(page).content.decode()
    assert "<span data-claiming title=" in body and "gathering messages" in body
    assert as_user(viewer).get(reverse("dlq-job-progress", args=[job.pk])).json()["job"]["claiming"] is True


def test_the_job_page_offers_controls_that_fit_the_status(as_user, operator, job):
    body = as_user(operator).get(reverse("dlq-job", args=[job.pk])).content.decode()
    assert 'data-control="pause" >' in body or 'data-control="pause">' in body
    assert 'data-control="resume" hidden' in body


def test_progress_json_is_the_websocket_payload(as_user, viewer, job):
    data = as_user(viewer).get(reverse("dlq-job-progress", args=[job.pk])).json()
    assert data["type"] == "job.progress"
    assert data["job"] == {
        "id": job.pk,
        "status": "running",
        "total": 3,
        "succeeded": 1,
        "failed": 1,
        "skipped": 0,
        "done": 2,
        "percent": 66.7,
        "claiming": False,
    }


def test_the_failures_fragment_refreshes_alone(as_user, viewer, job):
    response = as_user(viewer).get(reverse("dlq-job", args=[job.pk]), {"part": "problems"})
    assert b"<html" not in response.content and b"NOT_FOUND" in response.content


def test_pause_resume_and_cancel(as_user, operator, job):
    client = as_user(operator)
    assert client.post(reverse("dlq-job-control", args=[job.pk, "pause"])).status_code == 302
    job.refresh_from_db()
    assert job.status == "paused"
    client.post(reverse("dlq-job-control", args=[job.pk, "resume"]))
    job.refresh_from_db()
    assert job.status == "running"
    client.post(reverse("dlq-job-control", args=[job.pk, "cancel"]))
    job.refresh_from_db()
    assert job.status == "cancelling"
    again = client.post(reverse("dlq-job-control", args=[job.pk, "resume"]), follow=True)
    assert b"only a paused job can be resumed" in again.content


def test_an_unknown_control_is_a_bad_request(as_user, operator, job):
    assert as_user(operator).post(reverse("dlq-job-control", args=[job.pk, "explode"])).status_code == 400


def test_a_viewer_cannot_control_a_job(as_user, viewer, job):
    assert as_user(viewer).post(reverse("dlq-job-control", args=[job.pk, "cancel"])).status_code == 403
    job.refresh_from_db()
    assert job.status == "running"


def test_the_jobs_list_and_its_empty_state(as_user, viewer, job):
    client = as_user(viewer)
    body = client.get(reverse("dlq-jobs")).content.decode()
    assert f'href="/jobs/{job.pk}/"' in body and "<progress" in body
    RedriveJob.objects.all().delete()
    assert b"No redrive jobs yet" in client.get(reverse("dlq-jobs")).content


@pytest.fixture
def kafka_dlt(db):
    from dlqadmin.services.connections import connection_create
    from tests.conftest import KAFKA_BOOTSTRAP

    conn = connection_create(name="kafka-main", kind="kafka", url=KAFKA_BOOTSTRAP)
    return Source.objects.create(
        connection=conn, name="orders-svc-dlq", mode="topic", address="orders-svc-dlq"
    )


def no_origin():
    message = harvested()
    message.origin = Origin()
    return message


def test_the_plan_offers_the_destination_override_when_messages_need_one(as_user, operator, store, kafka_dlt):
    store(no_origin(), no_origin(), into=kafka_dlt)
    client = as_user(operator)
    response = client.get(URL, {"source": kafka_dlt.name})
    body = response.content.decode()
    assert "<strong data-plan-count>0</strong> of 2 selected messages" in body
    assert "2 need a destination" in body and "no original topic is recorded" in body
    assert '<details class="fieldset-details" id="destination-override" open>' in body
    assert 'name="topic"' in body and "give it here (a Kafka topic)" in body
    assert "Redrive 0 messages</button>" in body and "disabled>Redrive" not in body

    pinned = body.split('name="filter" value="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    form = {"confirm": "1", "select_all": "1", "filter": pinned, "batch_size": "100", "copy_original": "on"}
    refused = client.post(URL, form)
    assert refused.status_code == 400 and not RedriveJob.objects.exists()
    assert "2 selected message(s) need a destination" in refused.content.decode()

    response = client.post(URL, {**form, "topic": "orders-replay"})
    job = RedriveJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("dlq-job", args=[job.pk])
    assert (job.destination, job.total, job.skipped) == ({"topic": "orders-replay"}, 2, 0)


def test_the_plan_names_the_original_route_when_no_queue_is_recorded(as_user, operator, store):
    spring = harvested()
    spring.origin = Origin(exchange="orders", routing_key="order.created")
    store(spring, harvested())
    body = as_user(operator).get(URL, {"source": "orders-dlq"}).content.decode()
    assert "original exchange &#x27;orders&#x27;, routing key &#x27;order.created&#x27;" in body
    assert "1 goes through its original exchange and routing key: no queue is recorded for it" in body
    assert '<td class="mono">orders.q</td>' in body and "need a destination" not in body
