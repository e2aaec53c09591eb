"""API test fixtures: token-authenticated clients per role, stored dead letters to query."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.db.models import F
from rest_framework.test import APIClient

from brokers import headers
from dlqadmin.api.permissions import AnonThrottle, UserThrottle
from dlqadmin.models import DeadLetter, ErrorGroup
from dlqadmin.services.connections import connection_create
from dlqadmin.services.tokens import token_create

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fresh_throttle_counters(monkeypatch):
    """Every test counts requests from zero, in a cache of its own (never clearing a shared one)."""
    counters = LocMemCache(f"throttle-{uuid.uuid4().hex}", {})
    for throttle in (UserThrottle, AnonThrottle):
        monkeypatch.setattr(throttle, "cache", counters)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The persona fixtures set passwords; PBKDF2's cost is not what these tests are about."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def token_client(user) -> APIClient:
    _token, key = token_create(user=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def as_viewer(viewer):
    return token_client(viewer)


@pytest.fixture
def as_operator(operator):
    return token_client(operator)


@pytest.fixture
def as_admin(admin_user):
    return token_client(admin_user)


@pytest.fixture
def anon():
    return APIClient()


@pytest.fixture
def store():
    """Two sources (RabbitMQ, Kafka) with five stored dead letters of varied shape; no broker is
    contacted (the messages are rows, as the harvester stores them)."""
    rmq = connection_create(name="rmq", kind="rabbitmq", url="amqp://127.0.0.1:5672/")
    kafka = connection_create(name="kafka", kind="kafka", url="127.0.0.1:9092")
    orders = rmq.sources.create(name="orders", mode="queue", address="orders.dlq")
    payments = kafka.sources.create(name="payments", mode="topic", address="payments-dlt")
    specs = [
        (
            "a",
            orders,
            "new",
            "rejected",
            "OrderError",
            "order 1 not found",
            b'{"order": 1}',
            {"tenant": "acme"},
        ),
        ("b", orders, "redriven", "expired", "", "ttl", b'{"order": 2}', {"tenant": "globex"}),
        ("c", payments, "new", "exception", "CardError", "card declined", b"card=4242", {}),
        ("d", payments, "failed", "exception", "TimeoutError", "Timeout calling inventory", b"\xff\xfe", {}),
        ("e", payments, "parked", "exception", "CardError", "card declined", b"{}", {"tenant": "acme"}),
    ]
    rows = {}
    for i, (name, source, status, reason, cls, error, payload, hdrs) in enumerate(specs):
        encoded = (
            headers.encode_mapping(hdrs)
            if source is orders
            else headers.encode_pairs([(k, v.encode()) for k, v in hdrs.items()])
        )
        failed_at = T0 + timedelta(hours=i)
        group, _ = ErrorGroup.objects.get_or_create(
            fingerprint=f"{source.pk}/{cls}/{error}",
            defaults={"source": source, "error_class": cls, "reason": reason, "message_pattern": error},
        )
        ErrorGroup.objects.filter(pk=group.pk).update(count=F("count") + 1, last_seen=failed_at)
        rows[name] = DeadLetter.objects.create(
            source=source,
            position=name,
            status=status,
            reason=reason,
            error_class=cls,
            error_message=error,
            stacktrace=f"{cls}: {error}\n  at line 1",
            payload=payload,
            payload_size=len(payload),
            key=b"k-" + name.encode(),
            headers=encoded,
            properties={"content_type": "application/json"} if payload.startswith(b"{") else {},
            origin_queue="orders" if source is orders else "",
            origin_topic="payments" if source is payments else "",
            failed_at=failed_at,
            error_group=group,
        )
    rows["sources"] = (orders, payments)
    return rows
