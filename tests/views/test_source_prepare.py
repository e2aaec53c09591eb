"""The dashboard tells whether the broker captures a source's failures: where (which stream, and
whether dlqadmin created it), why not (a failed prepare is the source's error), and that NATS
advisories from before the capture existed are lost."""

from __future__ import annotations

import asyncio

import pytest
from django.urls import reverse
from django.utils.html import escape

from dlqadmin.models import Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.sources import source_create
from tests.conftest import NATS_URL
from tests.support.nats import advisory_subjects, delete_streams, users_capture, work_stream

LOST = "failures from before the capture existed are lost"


@pytest.fixture
def streams():
    created: list[tuple[str, str]] = []
    yield created
    asyncio.run(delete_streams(created))


@pytest.mark.django_db(transaction=True)
def test_a_source_that_cannot_be_prepared_is_saved_and_its_error_shown(as_user, admin_user):
    connection = connection_create(name="nats-down", kind="nats", url="nats://127.0.0.1:1")
    client = as_user(admin_user)
    response = client.post(
        reverse("dlq-source-add", args=[connection.pk]),
        {
            "prefix": "m",
            "m-name": "orders-adv",
            "m-mode": "advisory",
            "m-address": "ORDERS",
            "m-enabled": "on",
            "m-max_redrives": "5",
        },
        follow=True,
    )
    source = Source.objects.get(name="orders-adv")
    assert source.prepare_error and source.last_error == "not prepared: " + source.prepare_error
    page = response.content.decode()
    assert "flash-warning" in page and "Source orders-adv added. It is not prepared: " in page
    assert page.count(f'title="{escape(source.last_error)}"') == 1  # the source's error, once
    edit = client.get(reverse("dlq-source-edit", args=[source.pk])).content.decode()
    assert 'error-text small prepare-state">not prepared: ' in edit and LOST in edit


@pytest.mark.django_db
def test_the_connections_page_says_which_stream_captures_the_advisories(
    as_user, viewer, streams, django_capture_on_commit_callbacks
):
    stream, _ = asyncio.run(work_stream(NATS_URL, streams))
    mine = asyncio.run(users_capture(NATS_URL, streams, advisory_subjects(stream)))
    connection = connection_create(name="nats-main", kind="nats", url=NATS_URL)
    with django_capture_on_commit_callbacks(execute=True):
        source_create(connection=connection, name="adv", mode="advisory", address=stream)
    page = as_user(viewer).get(reverse("dlq-connections")).content.decode()
    assert (
        f"stream {mine} (not dlqadmin&#x27;s) already captures the dead-letter advisories of {stream}" in page
    )


@pytest.mark.django_db
def test_only_nats_source_forms_warn_that_earlier_advisories_are_lost(as_user, admin_user):
    nats = connection_create(name="nats-x", kind="nats", url="nats://127.0.0.1:1")
    rabbit = connection_create(name="rabbit-x", kind="rabbitmq", url="amqp://127.0.0.1:1/")
    adv = Source.objects.create(connection=nats, name="adv", mode="advisory", address="ORDERS", enabled=False)
    queue = Source.objects.create(connection=rabbit, name="q", mode="queue", address="orders.dlq")
    client = as_user(admin_user)
    adv_page = client.get(reverse("dlq-source-edit", args=[adv.pk])).content.decode()
    assert LOST in adv_page and "failures are captured once the source is enabled" in adv_page
    assert LOST not in client.get(reverse("dlq-source-edit", args=[queue.pk])).content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_django_admin_stores_a_source_while_the_broker_is_down(client, django_user_model):
    client.force_login(
        django_user_model.objects.create_superuser("root", "root@example.com", "root-pass-123")
    )
    connection = connection_create(name="nats-down", kind="nats", url="nats://127.0.0.1:1")
    response = client.post(
        reverse("admin:dlqadmin_source_add"),
        {
            "connection": connection.pk,
            "name": "orders-adv",
            "mode": "advisory",
            "address": "ORDERS",
            "options": "{}",
            "enabled": "on",
            "max_redrives": "5",
            "auto_retry_max_attempts": "3",
            "auto_retry_backoff_seconds": "60",
        },
        follow=True,
    )
    assert response.status_code == 200
    source = Source.objects.get(name="orders-adv")
    assert source.last_error == "not prepared: " + source.prepare_error and source.prepare_error
    message = f'<li class="warning">Source orders-adv is {escape(source.last_error)}</li>'
    assert message in response.content.decode()
