"""The broker adapter contract.

Every broker kind implements :class:`BrokerAdapter`. Adapters speak only in the dataclasses
below (never ORM objects, never client-library objects) and raise only :class:`BrokerError`.
All I/O methods are coroutines; sync callers (Django views, Celery tasks, management commands)
bridge through :func:`brokers.run`.

Nothing here reads Django settings: the caller passes everything in.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

# --------------------------------------------------------------------------------------------
# Errors


class BrokerError(Exception):
    """Any failure talking to a broker.

    ``permanent=True`` means retrying the same call cannot succeed (unknown queue or topic,
    unroutable message, message too large, access refused). ``permanent=False`` means the
    broker may recover (connection refused, timeout, broker restarting): callers retry those
    with backoff.
    """

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.message = message
        self.permanent = permanent

    def __str__(self) -> str:
        return self.message


class NotPrepared(BrokerError):
    """What :meth:`BrokerAdapter.prepare` sets up for a source is missing on the broker (never
    prepared, or someone deleted it, e.g. the NATS advisory capture stream). Permanent until
    ``prepare`` runs again: a caller may prepare and retry once."""

    def __init__(self, message: str):
        super().__init__(message, permanent=True)


# --------------------------------------------------------------------------------------------
# Capabilities


class Capability(enum.Flag):
    NONE = 0
    HARVEST = enum.auto()
    REDRIVE = enum.auto()
    DISCOVER = enum.auto()
    #: the broker copy can be removed once stored (RabbitMQ ack, NATS ack); Kafka cannot.
    REMOVE_FROM_DLQ = enum.auto()
    #: messages can be read without taking them (Kafka, JetStream); RabbitMQ cannot.
    PEEK = enum.auto()
    #: the harvest cursor can be moved back to an offset or a time and harvested again.
    REWIND = enum.auto()
    #: the source keeps nothing: only what arrives while the harvester runs is seen (core NATS).
    LIVE_ONLY = enum.auto()
    #: failures are captured only once ``prepare()`` has set the broker up (NATS advisories);
    #: what happened before that is lost.
    PREPARE = enum.auto()


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class TLSOptions:
    enabled: bool = False
    verify: bool = True
    ca_pem: str = ""
    client_cert_pem: str = ""
    client_key_pem: str = ""


@dataclass(frozen=True)
class ConnectionConfig:
    """How to reach one broker. ``url`` carries no credentials; they are separate fields."""

    kind: str
    url: str
    username: str = ""
    password: str = field(default="", repr=False)
    tls: TLSOptions = field(default_factory=TLSOptions)
    options: dict[str, Any] = field(default_factory=dict)
    #: seconds to wait when connecting or for a broker answer.
    timeout: float = 10.0


@dataclass
class SourceSpec:
    """One dead-letter location to harvest.

    ``mode``: ``queue`` (RabbitMQ), ``topic`` (Kafka), ``advisory`` / ``dlq_stream`` /
    ``subject`` (NATS). ``address``: queue / topic / stream / subject. ``cursor`` is opaque,
    adapter-owned state that the caller persists between harvests (it may be updated in place).
    """

    name: str
    mode: str
    address: str
    options: dict[str, Any] = field(default_factory=dict)
    remove_after_harvest: bool = True
    cursor: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Harvest output


@dataclass
class Origin:
    """Where the message was going when it failed. Unused fields stay empty/None."""

    exchange: str = ""
    routing_key: str = ""
    routing_keys: list[str] = field(default_factory=list)
    queue: str = ""
    topic: str = ""
    partition: int | None = None
    offset: int | None = None
    stream: str = ""
    subject: str = ""
    seq: int | None = None
    #: anything else worth keeping (consumer, deliveries, timestamp, consumer group, ...); JSON-safe.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class HarvestedMessage:
    """One dead letter as read from the broker, losslessly.

    ``headers`` uses the tagged encoding of :mod:`brokers.headers` (ordered ``[name, node]``
    pairs). ``properties`` holds broker properties (AMQP basic properties, Kafka timestamp, ...)
    as JSON-safe values. ``position`` is unique per source and stable across re-reads of the
    same broker message, so storing it twice is detectable.
    """

    position: str
    payload: bytes
    headers: list = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    key: bytes | None = None
    origin: Origin = field(default_factory=Origin)
    reason: str = ""
    error_class: str = ""
    error_message: str = ""
    stacktrace: str = ""
    failed_at: datetime | None = None
    retry_count: int = 0
    #: False when the broker no longer holds the payload (e.g. NATS retention removed it).
    payload_available: bool = True
    #: what the adapter could not read, one "could not read <field>: <why>" each. A dead letter
    #: is often exactly the message its producer got wrong: an unreadable field never stops the
    #: message (nor its batch), it falls back to a neutral value and says so here.
    read_notes: list[str] = field(default_factory=list)


#: Called by ``harvest`` with each batch; must durably store it before returning. The adapter
#: acknowledges/commits the batch on the broker only after the sink returned. If the sink raises,
#: nothing in the batch is acknowledged and the exception propagates out of ``harvest``.
Sink = Callable[[list[HarvestedMessage]], Awaitable[None]]


@dataclass
class HarvestResult:
    received: int = 0
    batches: int = 0
    #: True when the source was drained (nothing more to read right now).
    exhausted: bool = False
    #: messages left on the broker as far as the adapter can tell (None = unknown).
    backlog: int | None = None


# --------------------------------------------------------------------------------------------
# Redrive input / output


@dataclass
class Destination:
    """Where to redrive to. ``None`` everywhere means "the original destination".

    RabbitMQ: ``exchange`` + ``routing_key`` (exchange "" = default exchange, routing key =
    queue name); ``use_original_route=True`` publishes to the original exchange and routing key
    instead of the failed queue (the default for a message whose queue is unknown but whose
    original exchange and routing key are). Kafka: ``topic`` and optional ``partition``. NATS:
    ``subject``. A message with no original destination and no override is not sent: its
    outcome is a permanent failure that says it needs a destination.
    """

    exchange: str | None = None
    routing_key: str | None = None
    use_original_route: bool = False
    topic: str | None = None
    partition: int | None = None
    subject: str | None = None


@dataclass
class HeaderPolicy:
    """Which headers a redrive copies, strips and adds.

    Broker-owned headers are always stripped (``x-death``, ``x-first-death-*``,
    ``x-last-death-*``, ``x-delivery-count``, ``x-stream-offset``, ``Nats-*``). Diagnostics
    (``kafka_dlt-*``, ``__connect.errors.*``, ``retry_topic-*``, ``x-exception-*``) are stripped unless
    ``keep_diagnostics``. ``strip`` adds more name prefixes to strip (case-insensitive).
    ``copy_original=False`` sends only the retry headers and ``extra``.
    """

    copy_original: bool = True
    strip: list[str] = field(default_factory=list)
    keep_diagnostics: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    #: also set Spring AMQP's ``retry-count`` (long) mirror on RabbitMQ.
    spring_retry_count: bool = False


@dataclass
class RedriveMessage:
    """One message to publish. ``ref`` is the caller's id, echoed in the outcome."""

    ref: Any
    redrive_id: str
    payload: bytes
    headers: list = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    key: bytes | None = None
    origin: Origin = field(default_factory=Origin)
    retry_count: int = 0


@dataclass
class RedriveOutcome:
    ref: Any
    ok: bool
    #: where it went, e.g. "exchange='' routing_key='orders.q'", "orders/3/17", "orders.created"
    destination: str = ""
    #: broker position of the new copy when known (Kafka partition/offset, JetStream seq)
    position: str = ""
    error: str = ""
    permanent: bool = False


@dataclass
class Preparation:
    """What :meth:`BrokerAdapter.prepare` set up or found.

    ``options``: source options the harvest of this source needs from now on (e.g. the NATS
    capture stream to read when one of the user's streams already captures the advisories). The
    caller keeps them and passes them back in ``SourceSpec.options``, under the user's own
    options; they belong to the prepared location and are dropped when the source moves.
    ``note``: one sentence for people: where failures are captured and who owns it.
    """

    options: dict[str, Any] = field(default_factory=dict)
    note: str = ""


# --------------------------------------------------------------------------------------------
# Health and discovery


@dataclass
class Health:
    ok: bool
    server_version: str = ""
    latency_ms: float | None = None
    error: str = ""


@dataclass
class DiscoveredConsumer:
    """A consumer of a discovered location, with its redelivery limit (NATS: the ``max_deliver``
    that makes a message dead; None = unlimited, only terminated messages would be dead)."""

    name: str
    max_deliver: int | None = None


@dataclass
class DiscoveredSource:
    mode: str
    address: str
    #: why we think it is a dead-letter location, e.g. "target of DLX orders.dlx", "name ends in -dlt"
    reason: str
    messages: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: the consumers of the location that decide what dies there (NATS streams), if known
    consumers: list[DiscoveredConsumer] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# The contract


class BrokerAdapter(abc.ABC):
    """One broker connection. Create per use (or per harvester loop) and ``await close()``."""

    kind: ClassVar[str]
    capabilities: ClassVar[Capability]
    #: source modes this adapter harvests
    modes: ClassVar[tuple[str, ...]]

    #: True when a long-running harvester owns this adapter (``manage.py harvest --follow``):
    #: it may keep broker-side membership across harvest passes, so replicas share the work the
    #: broker's way (Kafka: the adapter joins the source's consumer group and holds some of its
    #: partitions). RabbitMQ competing consumers and a NATS durable shared by every replica need
    #: nothing kept.
    follow: bool = False

    def __init__(self, config: ConnectionConfig):
        self.config = config

    async def release(self, *, keep: set[str]) -> None:  # noqa: B027 - optional hook
        """Follow mode: give up what is held for any address not in ``keep`` (a source that was
        disabled, deleted or moved), so the other replicas or members get it at once."""

    def holdings(self) -> dict[str, list[int]]:
        """What this adapter holds of the broker's shared work: source address -> partitions
        (Kafka group members). Empty when the broker hands out messages, not partitions."""
        return {}

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    @abc.abstractmethod
    async def health(self) -> Health:
        """Reachability, server version and round-trip latency. Never raises: errors go in ``Health``."""

    @abc.abstractmethod
    async def discover(self) -> list[DiscoveredSource]:
        """Candidate dead-letter locations on this broker. Read-only. Raises BrokerError."""

    @abc.abstractmethod
    async def harvest(
        self, source: SourceSpec, sink: Sink, *, limit: int | None = None, batch_size: int = 100
    ) -> HarvestResult:
        """Read up to ``limit`` dead letters (all available when None) in batches of at most
        ``batch_size`` and hand each batch to ``sink``; acknowledge on the broker only after the
        sink returned. Returns when the source is drained or ``limit`` is reached.

        At-least-once: a crash between the sink and the ack re-delivers the batch, and the same
        ``position`` values come back. Raises BrokerError; on any error nothing unstored is acked.
        """

    @abc.abstractmethod
    async def redrive(
        self,
        messages: Sequence[RedriveMessage],
        *,
        destination: Destination | None = None,
        header_policy: HeaderPolicy | None = None,
    ) -> list[RedriveOutcome]:
        """Publish each message and wait for the broker's confirmation (publisher confirm,
        acks=all delivery report, PubAck). One outcome per message, in order; ``ok=True`` only
        after the confirm. Per-message failures are outcomes, not exceptions; a BrokerError is
        raised only when nothing could be attempted (e.g. broker unreachable).
        """

    async def prepare(self, source: SourceSpec) -> Preparation:
        """Create what the broker needs so failures of ``source`` are captured (e.g. the NATS
        advisory capture stream), or find what already captures them. Idempotent; only the modes
        with ``Capability.PREPARE`` need it (default: nothing to do). ``source.options`` are the
        user's options only (not a previous ``Preparation``'s). Raises BrokerError."""
        return Preparation()

    async def backlog(self, source: SourceSpec) -> int | None:
        """Messages waiting to be harvested, when the broker can tell (None = unknown)."""
        return None

    async def rewind(
        self, source: SourceSpec, *, offset: int | None = None, timestamp_ms: int | None = None
    ) -> None:
        """Move the harvest position back (Capability.REWIND) so history is harvested again;
        rows already stored are not duplicated (UNIQUE position)."""
        raise BrokerError(f"{self.kind} sources cannot be rewound", permanent=True)

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Safe to call twice."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
