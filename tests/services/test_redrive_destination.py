"""The plan's SQL routes agree with where the adapters publish, for every origin x override.

``dlqadmin.services.redrive.destination`` restates the adapters' destination rules as database
expressions; these tests put real rows in PostgreSQL and compare each row's route, its text and
``needs_destination`` with what ``brokers.rabbitmq.redrive.target`` (and the Kafka / NATS rule:
the override, else the original topic / subject) would do with the same message."""

from __future__ import annotations

import pytest

from brokers.base import Destination, HarvestedMessage, Origin, RedriveMessage
from brokers.rabbitmq.redrive import NO_DESTINATION, target
from dlqadmin.models import DeadLetter, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import dead_letters_store
from dlqadmin.services.redrive import destination as routes

pytestmark = pytest.mark.django_db

RABBIT_ORIGINS = [
    Origin(queue="orders.q", exchange="orders", routing_key="order.created"),  # x-death
    Origin(exchange="orders", routing_key="order.created"),  # Spring RepublishMessageRecoverer
    Origin(exchange="", routing_key="orders.q"),  # Spring, published to the default exchange
    Origin(exchange="fanout-x", routing_key=""),  # Spring, fanout exchange
    Origin(),  # nothing recorded
]
RABBIT_DESTINATIONS = [
    {},
    {"use_original_route": True},
    {"exchange": "other"},
    {"exchange": ""},
    {"routing_key": "q2"},
    {"exchange": "x", "routing_key": "y"},
    {"use_original_route": True, "exchange": "x"},
    {"use_original_route": True, "routing_key": "z"},
    {"exchange": "", "routing_key": ""},
]


def stored(kind: str, origins: list[Origin]) -> list[DeadLetter]:
    conn = connection_create(name=f"c-{kind}", kind=kind, url="amqp://x/" if kind == "rabbitmq" else "h:1")
    source = Source.objects.create(connection=conn, name=f"s-{kind}", mode="queue", address="dlq")
    batch = [HarvestedMessage(position=f"p{i}", payload=b"x", origin=o) for i, o in enumerate(origins)]
    result = dead_letters_store(source=source, batch=batch)
    return list(DeadLetter.objects.filter(pk__in=result.inserted_ids).order_by("id"))


def planned(destination: dict) -> dict[int, tuple[str, str, bool]]:
    qs = routes.annotate_routes(DeadLetter.objects.all(), destination).annotate(
        needs=routes.needs_destination(destination)
    )
    return {row[0]: row[1:] for row in qs.values_list("pk", "route", "route_to", "needs")}


@pytest.mark.parametrize("destination", RABBIT_DESTINATIONS, ids=lambda d: str(d) or "default")
def test_rabbitmq_routes_match_where_the_adapter_publishes(destination):
    rows = stored("rabbitmq", RABBIT_ORIGINS)
    by_pk = planned(destination)
    for row, origin in zip(rows, RABBIT_ORIGINS, strict=True):
        message = RedriveMessage(ref=row.pk, redrive_id="r", payload=b"x", origin=origin)
        exchange, key = target(message, Destination(**destination))
        route, where, needs = by_pk[row.pk]
        case = f"{origin} with {destination}"
        assert needs == (route == routes.NEEDS_DESTINATION) == (not exchange and not key), case
        if needs:
            continue
        if route == routes.ORIGIN:
            assert (exchange, key, where) == ("", origin.queue, origin.queue), case
        else:
            assert where.endswith(f"exchange '{exchange}', routing key '{key}'"), case
            overriding = "exchange" in destination or "routing_key" in destination
            assert route == (routes.OVERRIDE if overriding else routes.ORIGINAL_ROUTE), case


def test_the_original_route_is_the_default_only_when_no_queue_is_recorded():
    with_queue, spring, _, _, nothing = stored("rabbitmq", RABBIT_ORIGINS)
    by_pk = planned({})
    assert by_pk[with_queue.pk] == (routes.ORIGIN, "orders.q", False)
    assert by_pk[spring.pk] == (
        routes.ORIGINAL_ROUTE,
        "original exchange 'orders', routing key 'order.created'",
        False,
    )
    assert by_pk[nothing.pk] == (routes.NEEDS_DESTINATION, "", True)
    assert routes.needs_reason("rabbitmq") == NO_DESTINATION


@pytest.mark.parametrize(
    ("kind", "field", "override"),
    [("kafka", "topic", {"topic": "replay"}), ("nats", "subject", {"subject": "s.r"})],
)
def test_kafka_and_nats_need_an_original_topic_or_subject_or_an_override(kind, field, override):
    known, unknown = stored(kind, [Origin(**{field: "orders"}), Origin()])
    assert planned({})[known.pk] == (routes.ORIGIN, "orders", False)
    assert planned({})[unknown.pk] == (routes.NEEDS_DESTINATION, "", True)
    where = next(iter(override.values()))
    assert {planned(override)[pk] for pk in (known.pk, unknown.pk)} == {(routes.OVERRIDE, where, False)}
    # a RabbitMQ override says nothing about Kafka / NATS messages
    assert planned({"exchange": "x", "routing_key": "y"})[unknown.pk][0] == routes.NEEDS_DESTINATION


def test_an_override_for_one_kind_leaves_the_other_kinds_on_their_own_rules():
    (rabbit,) = stored("rabbitmq", [Origin()])
    (kafka,) = stored("kafka", [Origin(topic="orders")])
    by_pk = planned({"topic": "replay"})
    assert by_pk[rabbit.pk][0] == routes.NEEDS_DESTINATION and by_pk[kafka.pk][0] == routes.OVERRIDE
    needing = DeadLetter.objects.filter(routes.needs_destination_q({"topic": "replay"}))
    assert list(needing.values_list("pk", flat=True)) == [rabbit.pk]
