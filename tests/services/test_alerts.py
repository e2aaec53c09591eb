"""Alerts: fire once per group per window, deliver to a real local webhook and by email."""

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from brokers.base import HarvestedMessage, Origin
from dlqadmin.models import AlertDelivery, AlertRule, RedriveJob, Source
from dlqadmin.services import alerts
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import dead_letters_store
from dlqadmin.services.redrive.worker import finish

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class Receiver:
    """A real HTTP server on 127.0.0.1 that records what it is sent."""

    def __init__(self, status: int = 200):
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers["Content-Length"])
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def source():
    conn = connection_create(name="rmq", kind="rabbitmq", url="amqp://127.0.0.1:5672/")
    return Source.objects.create(connection=conn, name="orders-dlq", mode="queue", address="orders.dlq")


def fail(source, position, error="order 1 not found"):
    dead_letters_store(
        source=source,
        batch=[
            HarvestedMessage(
                position=position,
                payload=b"{}",
                origin=Origin(queue="orders.q"),
                error_class="OrderError",
                error_message=error,
                failed_at=NOW,
            )
        ],
    )


def deliver_all():
    for delivery in AlertDelivery.objects.filter(status="pending"):
        alerts.alert_deliver(delivery=delivery)


def test_a_new_group_alerts_once_within_the_window(source, receiver, django_capture_on_commit_callbacks):
    AlertRule.objects.create(
        name="new groups", kind="new_error_group", channel="webhook", target=receiver.url
    )
    with django_capture_on_commit_callbacks(execute=False):
        fail(source, "a", "order 1 not found")
        fail(source, "b", "order 2 not found")  # same group: no second alert
        fail(source, "c", "card declined")  # a different group
    deliver_all()
    subjects = sorted(body["subject"] for body in receiver.bodies)
    assert len(subjects) == 2
    assert subjects[0].startswith("New failure in orders-dlq: OrderError card declined")
    assert receiver.bodies[0]["source"] == "orders-dlq"
    assert set(AlertDelivery.objects.values_list("status", flat=True)) == {"sent"}


def test_the_same_subject_alerts_again_in_a_new_window(source):
    rule = AlertRule.objects.create(
        name="r",
        kind="backlog",
        channel="webhook",
        target="http://127.0.0.1:9/x",
        threshold=10,
        window_minutes=15,
    )
    Source.objects.filter(pk=source.pk).update(backlog=50)
    assert alerts.alerts_evaluate(now=NOW) == 1
    assert alerts.alerts_evaluate(now=NOW + timedelta(minutes=5)) == 0
    assert alerts.alerts_evaluate(now=NOW + timedelta(minutes=16)) == 1
    assert rule.deliveries.count() == 2


def test_failure_rate_threshold(source):
    AlertRule.objects.create(
        name="rate",
        kind="failure_rate",
        channel="email",
        target="ops@example.com",
        threshold=3,
        window_minutes=10,
    )
    for i in range(2):
        fail(source, f"p{i}")
    assert alerts.alerts_evaluate(now=NOW + timedelta(minutes=1)) == 0
    fail(source, "p3")
    assert alerts.alerts_evaluate(now=NOW + timedelta(minutes=1)) == 1
    deliver_all()
    (email,) = mail.outbox
    assert email.subject == "[dlqadmin] 3 failures in orders-dlq in 10 min" and email.to == [
        "ops@example.com"
    ]


def test_a_failed_job_alerts_in_slack_format(receiver):
    AlertRule.objects.create(
        name="jobs", kind="job_failed", channel="webhook", target=receiver.url, slack_format=True
    )
    job = RedriveJob.objects.create(total=5, succeeded=3, failed=2)
    finish(job, "completed")
    deliver_all()
    (body,) = receiver.bodies
    assert set(body) == {"text"} and f"Redrive job #{job.pk} completed: 2 of 5 failed" in body["text"]


def test_an_unreachable_webhook_is_recorded_as_failed_and_raised_for_retry(source):
    AlertRule.objects.create(
        name="r", kind="new_error_group", channel="webhook", target="http://127.0.0.1:1/"
    )
    fail(source, "x")
    delivery = AlertDelivery.objects.get()
    with pytest.raises(alerts.DeliveryError):
        alerts.alert_deliver(delivery=delivery)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.error and delivery.attempts == 1


def test_a_receiver_error_status_is_a_failure():
    bad = Receiver(status=500)
    try:
        rule = AlertRule.objects.create(name="r", kind="job_failed", channel="webhook", target=bad.url)
        delivery = alerts.alert_fire(rule=rule, dedup_key="k", subject="s", payload={})
        with pytest.raises(alerts.DeliveryError):
            alerts.alert_deliver(delivery=delivery)
    finally:
        bad.close()


@pytest.mark.parametrize(
    ("channel", "target"),
    [
        ("webhook", "file:///etc/passwd"),
        ("webhook", "ftp://x"),
        ("email", "not-an-address"),
        ("email", "ops@example.com, not-an-address"),
        ("email", " , "),
        ("email", ""),
    ],
)
def test_targets_are_validated(channel, target):
    with pytest.raises(ValidationError) as refused:
        AlertRule(name="x", kind="job_failed", channel=channel, target=target).full_clean()
    assert list(refused.value.message_dict) == ["target"]


@pytest.mark.parametrize(
    ("channel", "target"),
    [("webhook", "https://hooks.example.com/dlq"), ("email", "ops@example.com, oncall@example.com")],
)
def test_a_target_that_suits_its_channel_is_accepted(channel, target):
    AlertRule(name="x", kind="job_failed", channel=channel, target=target).full_clean()
