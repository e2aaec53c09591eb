"""Behind a reverse proxy: the client is read from X-Forwarded-For only when the peer is a
trusted proxy (DLQADMIN_TRUSTED_PROXIES), for sign-in throttling, the API throttles and the
audit trail alike."""

import uuid

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.test import Client
from rest_framework.test import APIClient

from dlqadmin.api.permissions import AnonThrottle, UserThrottle
from dlqadmin.models import AuditEvent
from dlqadmin.services.tokens import token_create
from tests.conftest import user_in_role

pytestmark = pytest.mark.django_db

PROXY = "10.20.0.5"


def fresh_ip(prefix: str = "203.0.113") -> str:
    """An address no earlier run has failed sign-ins from (the counters live in Redis)."""
    return f"{prefix}.{uuid.uuid4().int % 250 + 1}"


def sign_in(client: Client, username: str, password: str) -> bool:
    client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    return "_auth_user_id" in client.session


@pytest.fixture
def behind_proxy(settings):
    settings.DLQADMIN_TRUSTED_PROXIES = ["10.20.0.0/16"]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def throttle_counters(monkeypatch):
    counters = LocMemCache(f"throttle-{uuid.uuid4().hex}", {})
    for throttle in (UserThrottle, AnonThrottle):
        monkeypatch.setattr(throttle, "cache", counters)


def test_ten_bad_passwords_from_one_forwarded_client_do_not_lock_out_another(behind_proxy, django_user_model):
    victim = f"carol-{uuid.uuid4().hex[:8]}"
    django_user_model.objects.create_user(victim, password="correct-horse-battery", is_staff=True)
    guesser_ip, colleague_ip = fresh_ip(), fresh_ip("198.51.100")
    guesser = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=guesser_ip)
    for i in range(10):
        assert not sign_in(guesser, f"nobody-{i}-{uuid.uuid4().hex[:6]}", "wrong")
    # the guesser's address is locked out, even for a right password ...
    assert not sign_in(guesser, victim, "correct-horse-battery")
    # ... the colleague behind the same proxy is not
    colleague = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"{colleague_ip}, 10.20.0.9")
    assert sign_in(colleague, victim, "correct-horse-battery")


def test_an_untrusted_peer_cannot_escape_the_lockout_with_x_forwarded_for(behind_proxy, django_user_model):
    victim = f"dave-{uuid.uuid4().hex[:8]}"
    django_user_model.objects.create_user(victim, password="correct-horse-battery", is_staff=True)
    peer = fresh_ip("192.0.2")
    for i in range(10):
        spoofing = Client(REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=fresh_ip("198.18.0"))
        assert not sign_in(spoofing, f"nobody-{i}-{uuid.uuid4().hex[:6]}", "wrong")
    spoofing = Client(REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=fresh_ip("198.18.1"))
    assert not sign_in(spoofing, victim, "correct-horse-battery")


def test_api_throttles_count_per_forwarded_client_and_ignore_untrusted_x_forwarded_for(
    behind_proxy, settings, throttle_counters
):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"dlq-anon": "2/min"}}
    url = "/api/v1/connections/"
    first = APIClient(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.20")
    assert [first.get(url).status_code for _ in range(3)] == [401, 401, 429]
    second = APIClient(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.21")
    assert second.get(url).status_code == 401
    # a peer that is no trusted proxy is counted by its own address, whatever it forwards
    codes = [
        APIClient(REMOTE_ADDR="192.0.2.44", HTTP_X_FORWARDED_FOR=f"198.18.2.{i}").get(url).status_code
        for i in range(3)
    ]
    assert codes == [401, 401, 429]


def test_the_audit_trail_records_the_forwarded_client(behind_proxy, django_user_model, throttle_counters):
    admin = user_in_role(django_user_model, "admin", f"adm-{uuid.uuid4().hex[:6]}")
    _token, key = token_create(user=admin, name="t")
    client = APIClient(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.77, 10.20.0.9")
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    body = {"name": f"c-{uuid.uuid4().hex[:8]}", "kind": "rabbitmq", "url": "amqp://127.0.0.1:5672/"}
    assert client.post("/api/v1/connections/", body, format="json").status_code == 201
    event = AuditEvent.objects.get(action="connection.create", detail__name=body["name"])
    assert event.remote_addr == "203.0.113.77"

    # the dashboard's audit records the client the same way; an untrusted peer's header is ignored
    browser = Client(REMOTE_ADDR="192.0.2.80", HTTP_X_FORWARDED_FOR="203.0.113.78")
    browser.force_login(admin)
    form = {"name": f"d-{uuid.uuid4().hex[:8]}", "kind": "rabbitmq", "url": "amqp://127.0.0.1:5672/"}
    assert browser.post("/connections/add/", form).status_code == 302
    event = AuditEvent.objects.get(action="connection.create", detail__name=form["name"])
    assert event.remote_addr == "192.0.2.80"


def test_metrics_through_a_proxy_on_loopback_are_not_mistaken_for_loopback(settings):
    settings.DLQADMIN_TRUSTED_PROXIES = ["127.0.0.1"]
    settings.DLQADMIN_METRICS_TOKEN = ""
    outside = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.90")
    assert outside.get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
