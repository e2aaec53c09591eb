"""Demo traffic: create demo topologies and produce *genuine* dead letters on each broker.

Used by ``manage.py seed_demo`` (topology), ``make demo`` (continuous traffic) and the tests
(bounded runs). It lives in ``brokers/`` because only this package may import aio-pika,
confluent-kafka and nats-py; each client is imported lazily, so a run that skips a broker never
loads its library. Every resource name starts with ``prefix``, so a test run never collides with
another test or with a running demo.

What each broker gets (every message is a realistic order / payment / customer / shipment, a
few are not JSON at all; error texts vary in ids and numbers so they group into a handful of
error groups):

RabbitMQ (``<prefix>.orders*``)
    A direct exchange feeding a work queue whose ``x-dead-letter-exchange`` is a fanout DLX that
    routes to the DLQ. A fake ``orders-service`` consumer either rejects (``requeue=false``: the
    broker dead-letters it with ``x-death`` reason ``rejected``) or, like Spring AMQP's
    ``RepublishMessageRecoverer``, publishes it to the DLX with ``x-exception-*`` and
    ``x-original-*`` headers and acks it. Reservations expire unconsumed (per-message TTL:
    ``expired``) and a full, length-limited audit queue drops its oldest (``maxlen``).
Kafka (``<prefix>.payments``, ``.payments-dlt``, ``.customers``, ``.connect-dlq``)
    Each failure first produces the original record, then its dead letter in the exact format of
    Spring Kafka's ``DeadLetterPublishingRecoverer`` (``kafka_dlt-*``, original partition and
    offset) or of a Kafka Connect sink's DLQ (``__connect.errors.*`` context headers).
NATS JetStream (stream ``<PREFIX>_SHIPMENTS``, subjects ``<prefix>.shipments.>``)
    A Limits-retention stream (``allow_direct``) and a pull consumer with ``max_deliver=2``. The
    worker terminates some messages with ``+TERM <reason>`` (a plain ``+TERM`` on servers older
    than 2.10.4, which ignore reasons) and naks the rest until ``MAX_DELIVERIES`` fires. The
    advisory capture stream must exist first: the adapter's ``prepare()`` creates it.

Command line (what ``make demo`` runs; SIGTERM / Ctrl-C stop it cleanly)::

    python -m brokers.simulate --nats-url nats://127.0.0.1:14222 --kafka-bootstrap 127.0.0.1:19092 \
        [--rabbitmq-url amqp://guest:guest@127.0.0.1:5672/] [--prefix demo] [--rate 2] \
        [--count N] [--duration SECONDS] [--setup]

Layout: :mod:`.common` (prefix check, logger, pacing), :mod:`.payloads` (realistic payloads and
error texts), :mod:`.rabbitmq`, :mod:`.kafka` and :mod:`.nats` (topology + traffic per broker),
:mod:`.cli` (``main`` / ``parse_args``) and ``__main__`` (``python -m brokers.simulate``).
"""

from __future__ import annotations

from .cli import main, parse_args
from .common import check_prefix, log
from .kafka import CONNECTOR, PAYMENTS_GROUP, KafkaNames, kafka_names, kafka_setup, kafka_traffic
from .nats import NatsNames, nats_names, nats_setup, nats_traffic
from .payloads import Failure, customer, garbage, order, payment, shipment
from .rabbitmq import (
    AUDIT_MAX_LENGTH,
    RESERVATION_TTL_MS,
    RabbitNames,
    rabbitmq_names,
    rabbitmq_setup,
    rabbitmq_traffic,
)

__all__ = [
    "AUDIT_MAX_LENGTH",
    "CONNECTOR",
    "PAYMENTS_GROUP",
    "RESERVATION_TTL_MS",
    "Failure",
    "KafkaNames",
    "NatsNames",
    "RabbitNames",
    "check_prefix",
    "customer",
    "garbage",
    "kafka_names",
    "kafka_setup",
    "kafka_traffic",
    "log",
    "main",
    "nats_names",
    "nats_setup",
    "nats_traffic",
    "order",
    "parse_args",
    "payment",
    "rabbitmq_names",
    "rabbitmq_setup",
    "rabbitmq_traffic",
    "shipment",
]
