"""Where each message of a redrive goes, decided in SQL for a whole selection at once.

The broker adapters decide where each message is published (``brokers.rabbitmq.redrive.target``,
the Kafka and NATS redrive modules). The plan, the claim and the automatic retry policy need the
same answer for a million rows without loading them, so this module states the same rules as
database expressions over the DeadLetter origin columns and the job's destination override
(``tests/services/test_redrive_destination.py`` checks that both agree). Every message takes one
route:

``origin``             back where it failed: RabbitMQ the queue (default exchange), Kafka the
                       original topic, NATS the original subject.
``original_route``     RabbitMQ: the original exchange and routing key; asked for with
                       ``use_original_route``, and the default when no queue is recorded but the
                       exchange and routing key are (Spring AMQP's ``RepublishMessageRecoverer``).
``override``           the destination the operator gave.
``needs_destination``  nothing recorded and nothing given: not redrivable. A job skips it with
                       :func:`needs_reason` instead of failing it at the broker.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import BooleanField, Case, CharField, ExpressionWrapper, F, Q, Value, When
from django.db.models.functions import Concat

from brokers.base import Destination

ORIGIN, ORIGINAL_ROUTE, OVERRIDE, NEEDS_DESTINATION = (
    "origin",
    "original_route",
    "override",
    "needs_destination",
)
ROUTES = (ORIGIN, ORIGINAL_ROUTE, OVERRIDE, NEEDS_DESTINATION)
ROUTE_LABELS = {
    ORIGIN: "back where it failed",
    ORIGINAL_ROUTE: "original exchange + routing key",
    OVERRIDE: "destination override",
    NEEDS_DESTINATION: "needs a destination",
}
KIND = "source__connection__kind"
_MISSING = {
    "rabbitmq": "no origin queue, exchange or routing key is recorded; give an exchange and routing key",
    "kafka": "no original topic is recorded; give a destination topic",
    "nats": "no original subject is recorded; give a destination subject",
}


def needs_reason(kind: str) -> str:
    """Why a message of ``kind`` with no origin and no override is not sent (the attempt's error)."""
    return f"needs a destination: {_MISSING.get(kind, 'no origin is recorded; give a destination')}"


def destination_of(destination: dict | Destination | None) -> Destination:
    if isinstance(destination, Destination):
        return destination
    return Destination(**(destination or {}))


@dataclass(frozen=True)
class _Part:
    """A constant (``value``) or an origin column (``column``) of the resolved target."""

    value: str = ""
    column: str = ""

    def empty(self) -> Q:
        if self.column:
            return Q(**{self.column: ""})
        return Q(pk__isnull=False) if self.value == "" else Q(pk__isnull=True)

    def expr(self):
        return F(self.column) if self.column else Value(self.value)


_QUEUE, _EXCHANGE, _KEY = (
    _Part(column="origin_queue"),
    _Part(column="origin_exchange"),
    _Part(column="origin_routing_key"),
)


def _text(*parts) -> Concat:
    return Concat(*[Value(p) if isinstance(p, str) else p for p in parts], output_field=CharField())


def _route(exchange: _Part, key: _Part, prefix: str = "") -> Concat:
    return _text(f"{prefix}exchange '", exchange.expr(), "', routing key '", key.expr(), "'")


def _rabbitmq(d: Destination) -> list[tuple[Q, str, object]]:
    """(condition, route, where) in order of precedence; mirrors ``brokers.rabbitmq.redrive.target``."""
    if d.exchange is None and d.routing_key is None:
        original = [(_EXCHANGE.empty() & _KEY.empty(), NEEDS_DESTINATION, Value(""))]
        if d.use_original_route:
            return [*original, (Q(), ORIGINAL_ROUTE, _route(_EXCHANGE, _KEY, "original "))]
        return [
            (~_QUEUE.empty(), ORIGIN, F("origin_queue")),
            *original,
            (Q(), ORIGINAL_ROUTE, _route(_EXCHANGE, _KEY, "original ")),
        ]
    if d.exchange is not None:
        exchange = _Part(value=d.exchange)
        key = _KEY if d.use_original_route or d.exchange else _QUEUE
    else:
        exchange = _EXCHANGE if d.use_original_route else _Part(value="")
        key = _QUEUE  # replaced below: routing_key is given
    if d.routing_key is not None:
        key = _Part(value=d.routing_key)
    return [
        (exchange.empty() & key.empty(), NEEDS_DESTINATION, Value("")),
        (Q(), OVERRIDE, _route(exchange, key)),
    ]


def _kafka(d: Destination) -> list[tuple[Q, str, object]]:
    if d.topic:
        where = d.topic if d.partition is None else f"{d.topic}@{d.partition}"
        return [(Q(), OVERRIDE, Value(where))]
    return [(Q(origin_topic=""), NEEDS_DESTINATION, Value("")), (Q(), ORIGIN, F("origin_topic"))]


def _nats(d: Destination) -> list[tuple[Q, str, object]]:
    if d.subject:
        return [(Q(), OVERRIDE, Value(d.subject))]
    return [(Q(origin_subject=""), NEEDS_DESTINATION, Value("")), (Q(), ORIGIN, F("origin_subject"))]


_RULES = {"rabbitmq": _rabbitmq, "kafka": _kafka, "nats": _nats}


def _cases(destination) -> list[tuple[Q, str, object]]:
    d = destination_of(destination)
    return [
        (Q(**{KIND: kind}) & q, route, where)
        for kind, rules in _RULES.items()
        for q, route, where in rules(d)
    ]


def needs_destination_q(destination=None) -> Q:
    """DeadLetter rows a redrive with ``destination`` (None: the original) could not send."""
    q = Q(pk__isnull=True)
    for kind, rules in _RULES.items():
        taken = Q(pk__isnull=True)  # rows an earlier rule of the same kind already decided
        for cond, route, _ in rules(destination_of(destination)):
            if route == NEEDS_DESTINATION:
                q |= Q(**{KIND: kind}) & cond & ~taken
            taken |= cond
    return q


def needs_destination(destination=None) -> ExpressionWrapper:
    """:func:`needs_destination_q` as a boolean column (for ``annotate`` / ``values_list``)."""
    return ExpressionWrapper(needs_destination_q(destination), output_field=BooleanField())


def annotate_routes(qs, destination=None):
    """``qs`` (DeadLetter) with ``route`` (one of :data:`ROUTES`) and ``route_to`` (where, as text)."""
    cases = _cases(destination)
    return qs.annotate(
        route=Case(*[When(q, then=Value(route)) for q, route, _ in cases], default=Value(ORIGIN)),
        route_to=Case(
            *[When(q, then=where) for q, _, where in cases], default=Value(""), output_field=CharField()
        ),
    )
