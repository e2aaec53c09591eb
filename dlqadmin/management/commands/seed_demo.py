"""``manage.py seed_demo [--rabbitmq-url URL] [--kafka-bootstrap HOST:PORT] [--nats-url URL]``.

Creates the demo's broker topology (through :mod:`brokers.simulate`) and the matching
Connections and Sources, then prepares each source (``services.harvest.prepare``: the NATS
advisory capture stream must exist before the first failure, or the advisory is lost). A broker whose
flag is absent is skipped. Idempotent: running it again updates URLs and credentials in place.

With Kafka it also stores the Avro schema of the demo's Avro payments (``payments-avro``) in the
schema store, bound to payments-dlt for records with ``content-type: application/avro``.

Traffic is not produced here: ``python -m brokers.simulate`` (started by ``make demo``) does that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

import brokers
from brokers import simulate
from dlqadmin.models import BrokerKind, Connection, Source, SourceMode, StoredSchema
from dlqadmin.services.connections import connection_create, connection_update
from dlqadmin.services.harvest.prepare import source_prepare
from dlqadmin.services.schemas import stored_schema_save
from dlqadmin.services.sources import source_create, source_update


@dataclass
class SourcePlan:
    name: str
    mode: str
    address: str
    options: dict = field(default_factory=dict)


def split_credentials(url: str) -> tuple[str, str, str]:
    """``amqp://user:pass@host/vhost`` -> (``amqp://host/vhost``, user, pass): the Connection
    keeps credentials in their own (encrypted) fields, never in the URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    clean = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    return clean, unquote(parts.username or ""), unquote(parts.password or "")


@transaction.atomic
def _upsert(kind: str, name: str, url: str, username: str, password: str, plans: list[SourcePlan]):
    """Create or update the connection and its sources through the services (validated, audited
    as the system). The embedded brokers' ports (and the encryption key) may differ from the last
    run, so an existing connection gets the new URL and credentials; a source that moved to
    another mode or address starts from an empty cursor (``source_update`` resets it)."""
    connection = Connection.objects.filter(name=name).first()
    if connection is None:
        connection = connection_create(name=name, kind=kind, url=url, username=username, password=password)
    else:
        connection = connection_update(
            connection=connection, kind=kind, url=url, username=username, password=password
        )
    sources = []
    for plan in plans:
        source = Source.objects.filter(name=plan.name).first()
        if source is None:
            source = source_create(
                connection=connection,
                name=plan.name,
                mode=plan.mode,
                address=plan.address,
                options=plan.options,
            )
        else:
            source = source_update(
                source=source,
                connection=connection,
                mode=plan.mode,
                address=plan.address,
                options={**(source.options or {}), **plan.options},
                enabled=True,
            )
        sources.append(source)
    return connection, sources


class Command(BaseCommand):
    help = "Create the demo topology on each given broker and the Connections/Sources that harvest it."

    def add_arguments(self, parser):
        parser.add_argument("--rabbitmq-url", help="amqp://user:pass@host:5672/ (skip RabbitMQ if absent)")
        parser.add_argument("--kafka-bootstrap", help="host:port of a Kafka-protocol broker (skip if absent)")
        parser.add_argument("--nats-url", help="nats://host:port of a JetStream server (skip if absent)")
        parser.add_argument("--prefix", default="demo", help="broker resource name prefix (default: demo)")

    def handle(self, *args, rabbitmq_url=None, kafka_bootstrap=None, nats_url=None, prefix="demo", **options):
        try:
            simulate.check_prefix(prefix)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not (rabbitmq_url or kafka_bootstrap or nats_url):
            raise CommandError("give at least one of --rabbitmq-url, --kafka-bootstrap, --nats-url")
        if rabbitmq_url:
            url, user, password = split_credentials(rabbitmq_url)
            names = self._setup(
                "RabbitMQ", url, lambda: brokers.run(simulate.rabbitmq_setup, rabbitmq_url, prefix=prefix)
            )
            plans = [SourcePlan("orders-dlq", SourceMode.QUEUE, names.dlq)]
            self._seed(BrokerKind.RABBITMQ, "rabbitmq-local", url, user, password, plans)
        if kafka_bootstrap:
            names = self._setup(
                "Kafka", kafka_bootstrap, lambda: simulate.kafka_setup(kafka_bootstrap, prefix=prefix)
            )
            plans = [
                SourcePlan("payments-dlt", SourceMode.TOPIC, names.payments_dlt),
                SourcePlan("connect-dlq", SourceMode.TOPIC, names.connect_dlq),
            ]
            self._seed(BrokerKind.KAFKA, "kafka-embedded", kafka_bootstrap, "", "", plans)
            self._store_payment_schema()
        if nats_url:
            url, user, password = split_credentials(nats_url)
            names = self._setup(
                "NATS", url, lambda: brokers.run(simulate.nats_setup, nats_url, prefix=prefix)
            )
            plans = [SourcePlan("shipments-advisories", SourceMode.ADVISORY, names.stream)]
            self._seed(BrokerKind.NATS, "nats-embedded", url, user, password, plans)

    def _store_payment_schema(self) -> None:
        """The Avro schema of the demo's Avro payments, in the schema store, bound to
        payments-dlt for records whose content-type is application/avro (decoded in the UI)."""
        existing = StoredSchema.objects.filter(name="payments-avro").first()
        stored_schema_save(
            actor=None,
            schema=existing,
            sources=list(Source.objects.filter(name="payments-dlt")),
            name="payments-avro",
            kind="avro",
            definition=json.dumps(simulate.payloads.PAYMENT_AVRO),
            header="content-type",
            header_value="application/avro",
        )
        self.stdout.write("kafka-embedded: schema payments-avro decodes payments-dlt's Avro records")

    def _setup(self, label: str, where: str, create):
        try:
            return create()
        except Exception as exc:  # noqa: BLE001 - any client error means "cannot seed this broker"
            raise CommandError(f"{label} at {where}: cannot create the demo topology: {exc}") from exc

    def _seed(self, kind, name, url, username, password, plans: list[SourcePlan]) -> None:
        connection, sources = _upsert(kind, name, url, username, password, plans)
        for source in sources:
            # again even when nothing changed: the embedded broker may be a fresh one
            if not source_prepare(source=source, timeout=10.0):
                raise CommandError(f"{name}: preparing source {source.name} failed: {source.prepare_error}")
        for source in sources:
            self.stdout.write(f"{name}: source {source.name} ({source.mode}) harvests {source.address}")
