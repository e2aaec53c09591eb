"""Storing harvested batches: idempotent, grouped, loop-guarded, credentials encrypted."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection as db

from brokers import headers
from brokers.base import HarvestedMessage, Origin
from dlqadmin.models import Connection, DeadLetter, DeadLetterStatus, ErrorGroup, ErrorGroupStatus, Source
from dlqadmin.services.connections import connection_config, connection_create
from dlqadmin.services.grouping import normalise_message
from dlqadmin.services.harvest.store import dead_letters_store

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def source():
    conn = connection_create(
        name="rmq", kind="rabbitmq", url="amqp://127.0.0.1:5672/", username="guest", password="guest"
    )
    return Source.objects.create(
        connection=conn, name="orders-dlq", mode="queue", address="orders.dlq", max_redrives=3
    )


def message(
    position: str, *, error="order 42 not found", cls="OrderError", retry=0, minutes=0, payload=b"{}"
):
    return HarvestedMessage(
        position=position,
        payload=payload,
        headers=headers.encode_mapping({"tenant": "acme", "x-retry-count": retry, "raw": b"\xff\x00"}),
        properties={"message_id": f"m-{position}", "content_type": "application/json"},
        origin=Origin(queue="orders.q", exchange="orders", routing_key="order.created"),
        reason="rejected",
        error_class=cls,
        error_message=error,
        failed_at=T0 + timedelta(minutes=minutes),
        retry_count=retry,
    )


def test_storing_the_same_batch_twice_inserts_nothing_the_second_time(source):
    batch = [message("orders.dlq:a"), message("orders.dlq:b")]
    first = dead_letters_store(source=source, batch=batch)
    second = dead_letters_store(source=source, batch=batch)
    assert (first.inserted, first.duplicates) == (2, 0)
    assert (second.inserted, second.duplicates) == (0, 2)
    assert DeadLetter.objects.filter(source=source).count() == 2
    source.refresh_from_db()
    assert source.harvested_total == 2
    assert ErrorGroup.objects.get().count == 2


def test_a_repeated_position_within_one_batch_is_stored_once(source):
    result = dead_letters_store(source=source, batch=[message("p"), message("p")])
    assert result.inserted == 1 and DeadLetter.objects.count() == 1


def test_the_database_itself_rejects_a_duplicate_position(source):
    from django.db import IntegrityError, transaction

    dead_letters_store(source=source, batch=[message("dup")])
    with pytest.raises(IntegrityError), transaction.atomic():
        DeadLetter.objects.create(source=source, position="dup")


def test_the_stored_row_is_lossless(source):
    payload = b"\x00\xffnot utf-8\x80"
    dead_letters_store(source=source, batch=[message("x", payload=payload)])
    row = DeadLetter.objects.get()
    assert bytes(row.payload) == payload and row.payload_size == len(payload)
    assert headers.get(row.headers, "raw") == b"\xff\x00"
    assert headers.get(row.headers, "x-retry-count") == 0
    assert [name for name, _ in row.headers] == ["tenant", "x-retry-count", "raw"]
    assert row.origin_queue == "orders.q" and row.origin_exchange == "orders"
    assert row.properties["message_id"] == "m-x"
    assert row.failed_at == T0 and row.status == DeadLetterStatus.NEW


def test_nul_in_error_text_does_not_break_postgres(source):
    dead_letters_store(source=source, batch=[message("nul", error="bad\x00byte")])
    assert DeadLetter.objects.get().error_message == "bad\ufffdbyte"


def test_failures_differing_only_in_ids_share_a_group(source):
    dead_letters_store(
        source=source,
        batch=[
            message("1", error="order 42 not found at 2026-11-26T10:00:00Z"),
            message("2", error="order 977 not found at 2026-11-26T11:30:12Z"),
            message("3", error="customer 5 suspended"),
        ],
    )
    groups = {g.message_pattern: g.count for g in ErrorGroup.objects.all()}
    assert groups == {"order <n> not found at <ts>": 2, "customer <n> suspended": 1}


def test_a_new_failure_reopens_a_resolved_group(source):
    dead_letters_store(source=source, batch=[message("1", minutes=0)])
    ErrorGroup.objects.update(status=ErrorGroupStatus.RESOLVED)
    dead_letters_store(source=source, batch=[message("2", minutes=5)])
    group = ErrorGroup.objects.get()
    assert group.status == ErrorGroupStatus.OPEN
    assert group.count == 2 and group.last_seen == T0 + timedelta(minutes=5) and group.first_seen == T0


def test_a_message_at_the_redrive_limit_is_parked(source):
    dead_letters_store(source=source, batch=[message("fresh", retry=2), message("looping", retry=3)])
    assert dict(DeadLetter.objects.values_list("position", "status")) == {
        "fresh": DeadLetterStatus.NEW,
        "looping": DeadLetterStatus.PARKED,
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Order 7f3c9a2e-1b2c-4d5e-8f90-123456789abc failed", "Order <uuid> failed"),
        ("timeout after 3000ms on 10.0.0.1:5432", "timeout after <n>ms on <n>.<n>:<n>"),
        ("user 'alice' lacks role", "user '<v>' lacks role"),
        ("hash deadbeefdeadbeef1234 mismatch", "hash <hex> mismatch"),
        ("first line\n\tat Foo.bar(Foo.java:1)", "first line"),
    ],
)
def test_grouping_normalises_volatile_parts(raw, expected):
    assert normalise_message(raw) == expected


def test_credentials_are_encrypted_in_the_database_row():
    conn = connection_create(
        name="secure",
        kind="kafka",
        url="127.0.0.1:9092",
        username="svc",
        password="hunter2-very-secret",
        tls_client_key="-----BEGIN KEY-----abc",
    )
    with db.cursor() as cursor:
        cursor.execute(
            "select password_encrypted, tls_client_key_encrypted from dlqadmin_connection where id=%s",
            [conn.pk],
        )
        stored_password, stored_key = cursor.fetchone()
    assert "hunter2" not in stored_password and stored_password.startswith("gAAAA")
    assert "BEGIN KEY" not in stored_key
    fresh = Connection.objects.get(pk=conn.pk)
    assert fresh.password == "hunter2-very-secret"
    config = connection_config(fresh)
    assert config.password == "hunter2-very-secret"
    assert "hunter2" not in repr(config)
