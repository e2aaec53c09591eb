"""A source's capabilities are those of its mode, and the API and the dashboard show the same."""

import re

import pytest
from django.test import Client
from django.urls import reverse

import brokers
from tests.api.conftest import token_client
from tests.conftest import AMQP_URL, KAFKA_BOOTSTRAP, NATS_URL

pytestmark = pytest.mark.django_db
URLS = {"rabbitmq": AMQP_URL, "kafka": KAFKA_BOOTSTRAP, "nats": NATS_URL}
EVERY_MODE = [(kind, mode) for kind in brokers.ADAPTERS for mode in brokers.adapter_class(kind).modes]


def dashboard_capabilities(body: str, name: str) -> set[str]:
    """The capabilities the connections page lists under the source called ``name``."""
    row = body[body.index(f">{name}</a>") :]
    found = re.search(r'data-capabilities="([^"]*)"', row)
    assert found, f"no capabilities shown for {name}"
    return set(found.group(1).split())


def test_every_kind_and_mode_is_covered():
    assert {kind for kind, _ in EVERY_MODE} == set(brokers.ADAPTERS) and ("nats", "subject") in EVERY_MODE


@pytest.mark.parametrize(("kind", "mode"), EVERY_MODE)
def test_the_api_and_the_dashboard_show_the_same_capabilities_of_a_mode(kind, mode, admin_user):
    api = token_client(admin_user)
    response = api.post(
        "/api/v1/connections/", {"name": f"c-{kind}-{mode}", "kind": kind, "url": URLS[kind]}, format="json"
    )
    assert response.status_code == 201, response.content
    name = f"s-{kind}-{mode}"
    body = {"name": name, "connection": response.json()["id"], "mode": mode, "address": f"{mode}.dlq"}
    response = api.post("/api/v1/sources/", body, format="json")
    assert response.status_code == 201, response.content
    shown_by_api = set(response.json()["capabilities"])
    assert shown_by_api == set(api.get(f"/api/v1/sources/{response.json()['id']}/").json()["capabilities"])

    browser = Client()
    browser.force_login(admin_user)
    page = browser.get(reverse("dlq-connections")).content.decode()
    assert dashboard_capabilities(page, name) == shown_by_api

    declared = brokers.capabilities(kind, mode)
    assert shown_by_api == {c.name.lower() for c in type(declared) if c.value and c in declared}
    assert {"harvest", "redrive"} <= shown_by_api


def test_a_nats_subject_source_shows_it_cannot_peek_or_remove_a_copy(admin_user):
    api = token_client(admin_user)
    conn = api.post("/api/v1/connections/", {"name": "n", "kind": "nats", "url": NATS_URL}, format="json")
    for mode in ("subject", "dlq_stream"):
        body = {"name": mode, "connection": conn.json()["id"], "mode": mode, "address": f"{mode}.x"}
        assert api.post("/api/v1/sources/", body, format="json").status_code == 201
    browser = Client()
    browser.force_login(admin_user)
    page = browser.get(reverse("dlq-connections")).content.decode()
    subject = dashboard_capabilities(page, "subject")
    assert "live_only" in subject and "peek" not in subject and "remove_from_dlq" not in subject
    assert {"peek", "remove_from_dlq"} <= dashboard_capabilities(page, "dlq_stream")
