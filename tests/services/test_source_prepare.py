"""Preparing sources (services/harvest/prepare.py) against the real NATS server: on create,
enable and move, through the services the dashboard, the API and the admin call; a broker that
is down; the harvest preparing again what is missing (self-healing)."""

from __future__ import annotations

import asyncio

import pytest
from django.db import transaction

import brokers
from brokers.base import Capability
from dlqadmin.models import DeadLetter, Source
from dlqadmin.services.connections import connection_create, connection_update
from dlqadmin.services.harvest.follow import Harvester
from dlqadmin.services.harvest.prepare import prepare_state
from dlqadmin.services.harvest.store import source_harvest
from dlqadmin.services.sources import source_create, source_update
from tests.support.nats import (
    NATS_URL,
    advisory_subjects,
    connected,
    delete_streams,
    fail_both_ways,
    stream_exists,
    users_capture,
    wait_for_advisories,
    work_stream,
)

pytestmark = pytest.mark.django_db

DOWN = "nats://127.0.0.1:1"


@pytest.fixture
def streams():
    """(url, stream) pairs to delete after the test."""
    created: list[tuple[str, str]] = []
    yield created
    asyncio.run(delete_streams(created))


@pytest.fixture
def nats_connection():
    return connection_create(name="nats-prepare", kind="nats", url=NATS_URL)


@pytest.fixture
def create(django_capture_on_commit_callbacks):
    """``create(connection, stream, **settings)``: source_create as the surfaces call it, with
    its after-commit prepare run (the test's own transaction never commits)."""

    def make(connection, stream, mode="advisory", **settings):
        with django_capture_on_commit_callbacks(execute=True):
            return source_create(connection=connection, name=stream, mode=mode, address=stream, **settings)

    return make


@pytest.fixture
def update(django_capture_on_commit_callbacks):
    def change(source, **changes):
        with django_capture_on_commit_callbacks(execute=True):
            return source_update(source=source, **changes)

    return change


def capture_of(stream: str) -> str:
    return f"DLQADMIN_ADV_{stream}"


def test_an_advisory_source_is_prepared_when_created(nats_connection, create, streams):
    stream, _ = asyncio.run(work_stream(NATS_URL, streams))
    streams.append((NATS_URL, capture_of(stream)))
    source = create(nats_connection, stream)
    assert asyncio.run(stream_exists(NATS_URL, capture_of(stream)))
    stored = Source.objects.get(pk=source.pk)
    assert stored.prepared_at is not None and stored.prepare_error == "" and stored.last_error == ""
    assert stored.prepared_options == {"capture_stream": capture_of(stream)}
    assert prepare_state(stored).status == "ready"
    assert prepare_state(stored).text == (
        f"stream {capture_of(stream)} (created by dlqadmin) captures the dead-letter advisories of {stream}"
    )


def test_a_broker_that_is_down_stores_the_source_with_its_error_and_the_next_edit_prepares(
    create, update, streams
):
    stream, subject = asyncio.run(work_stream(NATS_URL, streams))
    streams.append((NATS_URL, capture_of(stream)))
    connection = connection_create(name="nats-down", kind="nats", url=DOWN)
    source = create(connection, stream)  # does not raise
    stored = Source.objects.get(pk=source.pk)
    assert stored.prepared_at is None and stored.prepare_error
    assert stored.last_error == "not prepared: " + stored.prepare_error and stored.last_error_at
    assert prepare_state(stored).status == "failed"
    assert not asyncio.run(stream_exists(NATS_URL, capture_of(stream)))

    connection_update(connection=connection, url=NATS_URL)
    update(Source.objects.get(pk=source.pk), max_redrives=3)  # any edit retries
    stored = Source.objects.get(pk=source.pk)
    assert stored.prepare_error == "" and stored.last_error == "" and stored.prepared_at
    assert asyncio.run(stream_exists(NATS_URL, capture_of(stream)))


def test_a_source_whose_prepare_failed_is_prepared_by_its_first_harvest(create, streams):
    """Not a 502 "prepare the source first": the harvest prepares it, then harvests."""
    stream, subject = asyncio.run(work_stream(NATS_URL, streams))
    streams.append((NATS_URL, capture_of(stream)))
    connection = connection_create(name="nats-later", kind="nats", url=DOWN)
    source = create(connection, stream)
    assert Source.objects.get(pk=source.pk).prepare_error
    connection_update(connection=connection, url=NATS_URL)
    source = Source.objects.select_related("connection").get(pk=source.pk)
    report = source_harvest(source=source)
    assert report.received == 0 and report.error == ""
    stored = Source.objects.get(pk=source.pk)
    assert stored.prepared_at and stored.prepare_error == "" and stored.last_error == ""
    asyncio.run(fail_both_ways(NATS_URL, stream, subject))
    asyncio.run(
        wait_for_advisories(NATS_URL, capture_of(stream), stream, ("MAX_DELIVERIES", "MSG_TERMINATED"))
    )
    assert source_harvest(source=stored).inserted == 2


def test_a_disabled_source_is_prepared_when_it_is_enabled(nats_connection, create, update, streams):
    stream, _ = asyncio.run(work_stream(NATS_URL, streams))
    streams.append((NATS_URL, capture_of(stream)))
    source = create(nats_connection, stream, enabled=False)
    assert not asyncio.run(stream_exists(NATS_URL, capture_of(stream)))
    state = prepare_state(Source.objects.get(pk=source.pk))
    assert (state.status, state.text) == (
        "pending",
        "not prepared: failures are captured once the source is enabled",
    )
    update(source, enabled=True)
    assert asyncio.run(stream_exists(NATS_URL, capture_of(stream)))
    assert prepare_state(Source.objects.get(pk=source.pk)).status == "ready"


def test_moving_a_source_prepares_its_new_address(nats_connection, create, update, streams):
    first, _ = asyncio.run(work_stream(NATS_URL, streams))
    second, _ = asyncio.run(work_stream(NATS_URL, streams))
    streams += [(NATS_URL, capture_of(first)), (NATS_URL, capture_of(second))]
    mine = asyncio.run(users_capture(NATS_URL, streams, advisory_subjects(first)))
    source = create(nats_connection, first)
    assert Source.objects.get(pk=source.pk).prepared_options["capture_stream"] == mine
    update(source, address=second)
    stored = Source.objects.get(pk=source.pk)
    assert stored.prepared_options == {"capture_stream": capture_of(second)}  # the old one is gone
    assert asyncio.run(stream_exists(NATS_URL, capture_of(second)))


def test_a_users_capture_is_read_and_said(nats_connection, create, streams):
    stream, subject = asyncio.run(work_stream(NATS_URL, streams))
    mine = asyncio.run(users_capture(NATS_URL, streams, advisory_subjects(stream)))
    source = create(nats_connection, stream)
    stored = Source.objects.select_related("connection").get(pk=source.pk)
    assert stored.prepared_options == {"capture_stream": mine, "durable": f"dlqadmin-harvester-{stream}"}
    assert prepare_state(stored).text.startswith(f"stream {mine} (not dlqadmin's) already captures")
    asyncio.run(fail_both_ways(NATS_URL, stream, subject))
    asyncio.run(wait_for_advisories(NATS_URL, mine, stream, ("MAX_DELIVERIES", "MSG_TERMINATED")))
    assert source_harvest(source=stored).inserted == 2
    assert not asyncio.run(stream_exists(NATS_URL, capture_of(stream)))


def test_the_harvester_recreates_a_deleted_capture_before_harvesting(nats_connection, create, streams):
    stream, subject = asyncio.run(work_stream(NATS_URL, streams))
    streams.append((NATS_URL, capture_of(stream)))
    source = create(nats_connection, stream)
    first = Source.objects.get(pk=source.pk).prepared_at

    async def delete_capture():
        async with connected(NATS_URL) as (_, js):
            await js.delete_stream(capture_of(stream))

    asyncio.run(delete_capture())
    harvester = Harvester(source_names=[stream])
    try:
        brokers.run(harvester.run_once)
        assert asyncio.run(stream_exists(NATS_URL, capture_of(stream)))
        stored = Source.objects.get(pk=source.pk)
        assert stored.prepared_at > first and stored.last_error == ""
        asyncio.run(fail_both_ways(NATS_URL, stream, subject))
        asyncio.run(
            wait_for_advisories(NATS_URL, capture_of(stream), stream, ("MAX_DELIVERIES", "MSG_TERMINATED"))
        )
        assert brokers.run(harvester.run_once) == 2
    finally:
        brokers.run(harvester.close)
    assert sorted(DeadLetter.objects.filter(source=source).values_list("reason", flat=True)) == [
        "max_deliveries",
        "terminated",
    ]


def test_a_prepare_the_harvester_cannot_do_is_the_sources_error(nats_connection, create, streams):
    stream = f"T_NOSUCH_{nats_connection.pk}_{id(streams)}"
    source = create(nats_connection, stream)
    expected = f"not prepared: stream {stream} does not exist on this server"
    assert Source.objects.get(pk=source.pk).last_error == expected
    harvester = Harvester(source_names=[stream])
    try:
        assert brokers.run(harvester.run_once) == 0
    finally:
        brokers.run(harvester.close)
    stored = Source.objects.get(pk=source.pk)
    assert stored.last_error == expected and prepare_state(stored).status == "failed"


def test_only_nats_advisory_sources_need_preparing(create):
    """RabbitMQ queues and Kafka topics keep their dead letters, a NATS DLQ stream keeps its
    messages, a core subject keeps nothing: nothing to set up, and no broker is contacted."""
    for kind, mode in (
        ("rabbitmq", "queue"),
        ("kafka", "topic"),
        ("nats", "dlq_stream"),
        ("nats", "subject"),
    ):
        assert Capability.PREPARE not in brokers.capabilities(kind, mode)
    assert Capability.PREPARE in brokers.capabilities("nats", "advisory")
    down = connection_create(name="rabbit-down", kind="rabbitmq", url="amqp://127.0.0.1:1/")
    source = Source.objects.get(pk=create(down, "orders.dlq", mode="queue").pk)
    assert (source.prepare_error, source.last_error, prepare_state(source).status) == ("", "", "")


def test_moving_a_source_forgets_why_its_old_address_was_not_prepared(create, update):
    connection = connection_create(name="nats-gone", kind="nats", url=DOWN)
    source = create(connection, "ORDERS")
    assert Source.objects.get(pk=source.pk).last_error.startswith("not prepared: ")
    update(Source.objects.get(pk=source.pk), address="PAYMENTS", enabled=False)
    stored = Source.objects.get(pk=source.pk)
    assert (stored.last_error, stored.prepare_error, prepare_state(stored).status) == ("", "", "pending")


@pytest.mark.django_db(transaction=True)
def test_the_broker_is_asked_only_after_the_write_commits(streams):
    """The Django admin wraps its whole save in a transaction: prepare waits for its commit
    (never holding the new row's locks during a broker call) and never runs on a rollback."""

    connection = connection_create(name="nats-tx", kind="nats", url=NATS_URL)
    stream, _ = asyncio.run(work_stream(NATS_URL, streams))
    streams.append((NATS_URL, capture_of(stream)))
    with pytest.raises(RuntimeError), transaction.atomic():
        source_create(connection=connection, name="rolled-back", mode="advisory", address=stream)
        raise RuntimeError("the admin's save failed later")
    assert not asyncio.run(stream_exists(NATS_URL, capture_of(stream)))
    with transaction.atomic():
        source = source_create(connection=connection, name=stream, mode="advisory", address=stream)
        assert not asyncio.run(stream_exists(NATS_URL, capture_of(stream)))
        assert source.prepared_at is None
    assert asyncio.run(stream_exists(NATS_URL, capture_of(stream)))
    assert source.prepared_at is not None  # the instance the caller holds shows the outcome


def test_pointing_a_connection_at_the_broker_prepares_its_sources(
    create, streams, django_capture_on_commit_callbacks
):
    first, _ = asyncio.run(work_stream(NATS_URL, streams))
    second, _ = asyncio.run(work_stream(NATS_URL, streams))
    streams += [(NATS_URL, capture_of(first)), (NATS_URL, capture_of(second))]
    connection = connection_create(name="nats-moved", kind="nats", url=DOWN)
    sources = [create(connection, first), create(connection, second)]
    off = create(connection, f"T_OFF_{first}", enabled=False)
    assert all(Source.objects.get(pk=s.pk).prepare_error for s in sources)  # one failure each
    with django_capture_on_commit_callbacks(execute=True):
        connection_update(connection=connection, url=NATS_URL)
    for source in sources:
        stored = Source.objects.get(pk=source.pk)
        assert (stored.prepare_error, stored.last_error) == ("", "") and stored.prepared_at
        assert asyncio.run(stream_exists(NATS_URL, capture_of(source.address)))
    assert Source.objects.get(pk=off.pk).prepared_at is None  # disabled: left alone
