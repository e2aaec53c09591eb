"""Publishing redrives: where each message goes, and confirmed publishes pipelined in windows."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq.exceptions as amqp_exc
from pamqp import commands

from brokers.base import BrokerError, Destination, HeaderPolicy, RedriveMessage, RedriveOutcome

from .connection import AMQP_FAILURES, amqp_errors, broker_error
from .messages import redrive_headers, redrive_properties

#: opens a fresh channel -> (aio-pika channel, its aiormq channel); raises BrokerError.
OpenChannel = Callable[[], Awaitable[tuple[aio_pika.abc.AbstractChannel, Any]]]


@dataclass
class Publish:
    index: int
    message: RedriveMessage
    exchange: str
    routing_key: str
    properties: commands.Basic.Properties

    @property
    def destination(self) -> str:
        return describe(self.exchange, self.routing_key)


def describe(exchange: str, routing_key: str) -> str:
    return f"exchange={exchange!r} routing_key={routing_key!r}"


def failed(message: RedriveMessage, destination: str, error: str, permanent: bool) -> RedriveOutcome:
    return RedriveOutcome(
        ref=message.ref, ok=False, destination=destination, error=error, permanent=permanent
    )


#: the outcome of a message with no recorded queue, exchange or routing key and no override.
NO_DESTINATION = (
    "needs a destination: no origin queue, exchange or routing key is recorded; "
    "give an exchange and routing key"
)


def target(message: RedriveMessage, destination: Destination) -> tuple[str, str]:
    """(exchange, routing key): by default the default exchange and the queue the message died
    in; when no queue is recorded (Spring AMQP's ``RepublishMessageRecoverer`` writes only
    ``x-original-exchange`` / ``x-original-routingKey``) and neither exchange nor routing key is
    given, the original exchange and routing key. ``use_original_route``: always the original
    exchange and routing key; explicit fields win. ("", "") means there is no destination.

    ``dlqadmin.services.redrive.destination`` mirrors this in SQL for the plan: keep them in step.
    """
    origin = message.origin
    original = destination.use_original_route or (
        not origin.queue and destination.exchange is None and destination.routing_key is None
    )
    if original:
        exchange, routing_key = origin.exchange, origin.routing_key
    else:
        exchange, routing_key = "", origin.queue
    if destination.exchange is not None:
        exchange = destination.exchange
        if not destination.use_original_route:
            routing_key = origin.routing_key if exchange else origin.queue
    if destination.routing_key is not None:
        routing_key = destination.routing_key
    return exchange, routing_key


def plan(
    messages: list[RedriveMessage], destination: Destination, policy: HeaderPolicy
) -> tuple[list[Publish], list[RedriveOutcome | None]]:
    """The publishes to attempt, and outcomes already known (no target, cannot encode)."""
    plans: list[Publish] = []
    outcomes: list[RedriveOutcome | None] = [None] * len(messages)
    for i, message in enumerate(messages):
        exchange, routing_key = target(message, destination)
        where = describe(exchange, routing_key)
        if not exchange and not routing_key:
            outcomes[i] = failed(message, where, NO_DESTINATION, True)
            continue
        try:
            properties = redrive_properties(message, redrive_headers(message, policy))
        except (TypeError, ValueError) as exc:
            outcomes[i] = failed(message, where, f"cannot encode the message: {exc}", True)
            continue
        plans.append(Publish(i, message, exchange, routing_key, properties))
    return plans, outcomes


def windows(plans: list[Publish], size: int) -> Iterator[list[Publish]]:
    """Chunks of at most ``size`` publishes in which no message_id repeats (aiormq matches a
    returned message to its publish by message_id)."""
    chunk: list[Publish] = []
    ids: set[str] = set()
    for p in plans:
        message_id = p.properties.message_id
        if len(chunk) >= size or (message_id and message_id in ids):
            yield chunk
            chunk, ids = [], set()
        chunk.append(p)
        if message_id:
            ids.add(message_id)
    if chunk:
        yield chunk


async def close_quietly(channel: aio_pika.abc.AbstractChannel | None) -> None:
    if channel is not None and not channel.is_closed:
        with contextlib.suppress(*AMQP_FAILURES, RuntimeError):
            await channel.close()


async def missing_exchanges(open_channel: OpenChannel, names: set[str], timeout: float) -> dict[str, str]:
    """{exchange: error} for target exchanges that do not exist (or may not be used). Checked up
    front on a throwaway channel: publishing to a missing exchange closes the publishing channel
    and fails every message in flight on it. Raises BrokerError when the broker is unreachable."""
    missing: dict[str, str] = {}
    channel = raw = None
    try:
        for name in sorted(names):
            if channel is None or channel.is_closed:
                channel, raw = await open_channel()
            try:
                with amqp_errors(f"check exchange {name!r}", timeout):
                    await raw.exchange_declare(name, passive=True, timeout=timeout)
            except BrokerError as exc:
                if isinstance(exc.__cause__, amqp_exc.ChannelNotFoundEntity):
                    missing[name] = f"exchange {name!r} does not exist"
                elif exc.permanent:
                    missing[name] = exc.message
                else:
                    raise
    finally:
        await close_quietly(channel)
    return missing


#: why a publish failed without the broker judging the message: its channel or connection died.
CHANNEL_LOST, CONNECTION_LOST = "channel", "connection"


async def publish_one(raw: Any, p: Publish, timeout: float) -> tuple[RedriveOutcome, str | None]:
    """One confirmed, mandatory publish -> (outcome, CHANNEL_LOST / CONNECTION_LOST / None)."""
    message = p.message
    try:
        await raw.basic_publish(
            bytes(message.payload),
            exchange=p.exchange,
            routing_key=p.routing_key,
            properties=p.properties,
            mandatory=True,
            timeout=timeout,
        )
    except amqp_exc.PublishError as exc:  # returned: no queue matched
        reply = f"{getattr(exc.frame, 'reply_code', 312)} {getattr(exc.frame, 'reply_text', 'NO_ROUTE')}"
        error = f"unroutable: no queue bound for {p.destination} ({reply})"
        return failed(message, p.destination, error, True), None
    except amqp_exc.DeliveryError:  # basic.nack
        return failed(message, p.destination, "the broker nacked the publish (not stored)", False), None
    except TimeoutError:
        error = f"no publisher confirm within {timeout:g}s: the copy may or may not be stored"
        return failed(message, p.destination, error, False), None
    except (TypeError, ValueError) as exc:  # pamqp cannot encode a header or property
        return failed(message, p.destination, f"cannot encode the message: {exc}", True), None
    except AMQP_FAILURES as exc:
        err = broker_error(exc, f"publish to {p.destination}", timeout)
        if isinstance(exc, amqp_exc.AMQPChannelError | amqp_exc.ChannelInvalidStateError):
            lost = CHANNEL_LOST
        else:
            lost = CONNECTION_LOST
        return failed(message, p.destination, err.message, err.permanent), lost
    except Exception:
        # aiormq fails the confirms still pending with a bare Exception when their channel or
        # connection closes without a reason (e.g. a kept connection closed under our feet).
        if not getattr(raw, "is_closed", False):
            raise
        error = f"publish to {p.destination}: the connection closed before the broker confirmed"
        return failed(message, p.destination, error, False), CONNECTION_LOST
    return RedriveOutcome(ref=message.ref, ok=True, destination=p.destination), None


async def publish_all(
    open_channel: OpenChannel,
    connected: Callable[[], bool],
    plans: list[Publish],
    outcomes: list[RedriveOutcome | None],
    *,
    window: int,
    timeout: float,
) -> None:
    """Publish ``plans`` in windows of concurrent publishes, each awaiting its own confirm, and
    fill ``outcomes``. Raises BrokerError only if the first window could not even start; after a
    lost connection the remaining messages get transient failures."""

    def give_up(reason: str) -> None:
        for p in plans:
            if outcomes[p.index] is None:
                outcomes[p.index] = failed(p.message, p.destination, reason, False)

    channel: aio_pika.abc.AbstractChannel | None = None
    raw: Any = None

    async def fresh_channel() -> bool:
        nonlocal channel, raw
        await close_quietly(channel)
        try:
            channel, raw = await open_channel()
            return True
        except BrokerError:
            return False

    async def republish(p: Publish) -> bool:
        """Publish ``p`` alone; retry while the channel or connection dies under it (the 504 may
        close the connection under the first tries). False: the broker could not be reached."""
        for attempt in range(3):
            if attempt:
                await asyncio.sleep(0.1 * attempt)
            if (channel is None or channel.is_closed or not connected()) and not await fresh_channel():
                continue
            outcome, lost = await publish_one(raw, p, timeout)
            if lost is None or outcome.permanent:
                outcomes[p.index] = outcome
                return True
        return False

    try:
        for chunk in windows(plans, window):
            if channel is not None and not connected():
                give_up("connection lost before this message was published")
                return
            if channel is None or channel.is_closed:
                try:
                    channel, raw = await open_channel()
                except BrokerError as exc:
                    if chunk[0] is plans[0]:
                        raise  # nothing could be attempted
                    give_up(exc.message)
                    return
            results = await asyncio.gather(*(publish_one(raw, p, timeout) for p in chunk))
            for p, (outcome, _) in zip(chunk, results, strict=True):
                outcomes[p.index] = outcome
            victims = [p for p, (_, lost) in zip(chunk, results, strict=True) if lost]
            if len(victims) < 2 or not any(lost == CHANNEL_LOST for _, lost in results):
                continue
            # A channel error caused by one message fails every publish in flight on that
            # channel (and aiormq may still write queued publishes on the dead channel, which
            # makes the broker close the whole connection: 504 CHANNEL_ERROR). Publish those
            # again one at a time on a fresh channel, reconnecting if need be, to learn which
            # message caused it. A copy stored just before the error may be duplicated;
            # consumers dedup on x-dlq-redrive-id.
            for p in victims:
                error = (
                    f"channel closed while {len(victims)} publishes were in flight: {outcomes[p.index].error}"
                )
                outcomes[p.index] = failed(p.message, p.destination, error, False)
            for p in victims:
                if not await republish(p):
                    give_up("the broker connection failed while isolating a channel error")
                    return
    finally:
        await close_quietly(channel)
