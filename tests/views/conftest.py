"""Fixtures for dashboard view tests: stored dead letters (via the real sink), signed-in clients."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from brokers import headers as header_codec
from brokers.base import HarvestedMessage, Origin
from dlqadmin.models import DeadLetter, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import dead_letters_store
from dlqadmin.services.search import search_index_backlog
from tests.conftest import AMQP_URL

HOSTILE = '<script>alert("pwn")</script>"><img src=x onerror=alert(1)>'
_positions = itertools.count()


@pytest.fixture
def connection(db):
    return connection_create(
        name="rabbit-main", kind="rabbitmq", url=AMQP_URL, username="guest", password="guest-secret-pw"
    )


@pytest.fixture
def source(connection):
    return Source.objects.create(
        connection=connection, name="orders-dlq", mode="queue", address="orders.dlq", max_redrives=3
    )


def harvested(
    *,
    payload: bytes = b'{"order": 42, "items": [1, 2]}',
    headers: dict | list | None = None,
    error: str = "order 42 not found",
    error_class: str = "OrderNotFound",
    reason: str = "rejected",
    minutes_ago: float = 5,
    retry: int = 0,
    stacktrace: str = "",
    content_type: str = "application/json",
) -> HarvestedMessage:
    encoded = (
        headers if isinstance(headers, list) else header_codec.encode_mapping(headers or {"tenant": "acme"})
    )
    return HarvestedMessage(
        position=f"pos-{next(_positions)}",
        payload=payload,
        headers=encoded,
        properties={"content_type": content_type, "message_id": "m-1"} if content_type else {},
        origin=Origin(queue="orders.q", exchange="orders", routing_key="order.created"),
        reason=reason,
        error_class=error_class,
        error_message=error,
        stacktrace=stacktrace,
        failed_at=timezone.now() - timedelta(minutes=minutes_ago),
        retry_count=retry,
    )


@pytest.fixture
def store(source):
    """``store(message, ...) -> [DeadLetter, ...]`` through the real harvest sink, then the
    search indexer."""

    def put(*messages: HarvestedMessage, into: Source | None = None) -> list[DeadLetter]:
        result = dead_letters_store(source=into or source, batch=list(messages))
        search_index_backlog()  # what the harvester's indexer does a moment later
        return list(DeadLetter.objects.filter(pk__in=result.inserted_ids).order_by("id"))

    return put


@pytest.fixture
def as_user():
    """``as_user(user) -> Client`` signed in as ``user``."""

    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


T0 = datetime(2026, 1, 1, tzinfo=UTC)
