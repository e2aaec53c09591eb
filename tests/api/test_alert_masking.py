"""Alerts leave the product: their error pattern and sample message are masked with the rules a
viewer would see applied, on the webhook (a real local HTTP server) and in the email."""

import re

import pytest
from django.core import mail

from dlqadmin.models import AlertDelivery
from dlqadmin.services import alerts
from tests.conftest import AMQP_URL, unique
from tests.services.test_alerts import Receiver
from tests.support import rabbit

pytestmark = pytest.mark.django_db

SECRET_EMAIL = "ann.lee@example.com"
SECRET_TOKEN = "tok_9f8e7d6c5b4a"
CODENAME = "Project Falcon"  # words survive the grouping's normalisation into the pattern


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def failing_queue():
    error = f"payment for {SECRET_EMAIL} refused with {SECRET_TOKEN} in {CODENAME}"
    top = rabbit.dead_letter(1, headers={"x-exception-fqcn": "PaymentError", "x-exception-message": error})
    yield top
    rabbit.delete(top)


def test_alerts_are_masked_for_the_most_restricted_viewer(as_admin, receiver, failing_queue, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    for body in (
        {
            "name": unique("emails"),
            "kind": "regex",
            "pattern": r"[\w.+-]+@[\w-]+\.[\w.]+",
            "replacement": "[email]",
        },
        {"name": unique("tokens"), "kind": "regex", "pattern": r"tok_\w+", "replacement": "[token]"},
        {
            "name": unique("codename"),
            "kind": "regex",
            "pattern": "Project Falcon",
            "replacement": "[codename]",
        },
    ):
        assert as_admin.post("/api/v1/masking-rules/", body, format="json").status_code == 201
    for channel, target in (("webhook", receiver.url), ("email", "ops@example.com")):
        rule = {"name": unique(channel), "kind": "new_error_group", "channel": channel, "target": target}
        assert as_admin.post("/api/v1/alert-rules/", rule, format="json").status_code == 201
    connection = as_admin.post(
        "/api/v1/connections/",
        {
            "name": unique("rmq"),
            "kind": "rabbitmq",
            "url": AMQP_URL,
            "username": "guest",
            "password": "guest",
        },
        format="json",
    ).json()
    source = as_admin.post(
        "/api/v1/sources/",
        {
            "name": unique("pay"),
            "connection": connection["id"],
            "mode": "queue",
            "address": failing_queue.dlq,
        },
        format="json",
    ).json()
    assert as_admin.post(f"/api/v1/sources/{source['id']}/harvest/").json()["inserted"] == 1

    # the alert task's work (the test transaction never commits, so nothing was enqueued)
    for delivery in AlertDelivery.objects.filter(status="pending"):
        alerts.alert_deliver(delivery=delivery)

    [hook] = receiver.bodies
    assert hook["event"] == "new_error_group" and hook["error_class"] == "PaymentError"
    sent = [hook["subject"], hook["pattern"], hook["sample"], mail.outbox[0].subject, mail.outbox[0].body]
    for text in sent:
        assert SECRET_EMAIL not in text and SECRET_TOKEN not in text and CODENAME not in text, text
    assert hook["sample"] == "payment for [email] refused with [token] in [codename]"
    assert hook["pattern"].endswith("in [codename]")
    assert re.search(r"\[email\] refused with \[token\] in \[codename\]", mail.outbox[0].body)
    # nothing unmasked is kept on the delivery either (the admin and the API list deliveries)
    for delivery in AlertDelivery.objects.all():
        assert CODENAME not in str(delivery.payload) + delivery.subject
