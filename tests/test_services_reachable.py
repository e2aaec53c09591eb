"""Every service the suite needs is up. Under CI=true a missing service fails, never skips."""

import socket

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection

from tests.conftest import AMQP_URL, IN_CI, KAFKA_BOOTSTRAP, NATS_URL


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def _require(ok: bool, what: str):
    if not ok:
        message = f"{what} is not reachable; run `bash scripts/ensure-services.sh`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.django_db
def test_postgres_is_the_test_database():
    with connection.cursor() as cursor:
        cursor.execute("select version()")
        assert "PostgreSQL" in cursor.fetchone()[0]
    assert psycopg.__version__


def test_redis_answers_ping():
    assert settings.REDIS_URL, "REDIS_URL must be set for the suite"
    _require(_port_open("127.0.0.1", 6379), "Redis")
    assert redis.Redis.from_url(settings.REDIS_URL, socket_timeout=3).ping()


@pytest.mark.parametrize(
    ("what", "address"),
    [
        ("RabbitMQ", AMQP_URL.split("//")[1].split("/")[0]),
        ("Kafka-protocol broker", KAFKA_BOOTSTRAP.split(",")[0]),
        ("NATS", NATS_URL.split("//")[1]),
    ],
)
def test_broker_port_is_open(what, address):
    host, _, port = address.rpartition(":")
    _require(_port_open(host or "127.0.0.1", int(port)), f"{what} at {address}")
