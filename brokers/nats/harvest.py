"""Harvesting the three NATS source modes.

``advisory``
    A durable pull consumer reads the capture stream (see :func:`admin.prepare_capture`). Each
    MAX_DELIVERIES / MSG_TERMINATED advisory names ``stream`` + ``stream_seq``; the original
    is fetched from the watched stream by sequence (direct get when the stream allows it,
    else STREAM.MSG.GET; both keep the exact header block). position =
    ``<stream>:<seq>:<consumer>``: an advisory re-read after a crash gives the same position
    (deduplicated by the caller), a redriven copy that fails again has a new sequence, hence
    a new row (and a consumer deleted and re-created under the same name that fails the same
    sequence again is treated as the same failure). Only advisories are acked; the original
    is never deleted from the work stream (it is user data: ``remove_after_harvest`` only
    advances the harvester). When retention already removed the original the row is still
    stored: empty payload, ``payload_available=False``, ``properties["payload_unavailable"]``
    (redrive refuses such rows). An advisory that cannot be read (not JSON, no stream or
    sequence, an original that cannot be fetched) is stored as it was captured, with a note,
    at position ``advisory:<capture stream>:<capture seq>`` (:mod:`brokers.nats.advisory`).
``dlq_stream``
    An application-level DLQ stream (the worker republished the failed message with
    ``x-original-subject`` & co, nestjs-jetstream style). position = ``<stream>:<seq>``. With
    ``remove_after_harvest`` a durable consumer acks after the sink: WorkQueue / Interest
    retention then removes the message; Limits retention keeps it unless
    ``options["delete_after_harvest"]``. Without it, Limits streams still use the durable (acks
    there delete nothing); WorkQueue / Interest streams are read without any consumer, by
    sequence, from ``source.cursor["next_seq"]``, because any ack there would delete.
``subject``
    Core NATS keeps nothing: only messages published while the harvest listens
    (``options["listen_seconds"]``, default 1 s) are seen, and a failing sink loses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from brokers import headers as hdrs
from brokers import reading
from brokers.base import BrokerError, HarvestedMessage, HarvestResult, NotPrepared, Origin, Sink, SourceSpec
from brokers.pipeline import store_ahead

from . import admin, advisory, wire
from .connection import JetStream, MessageGone, header_pairs, translate

log = logging.getLogger("brokers.nats")

ACK, NAK = b"+ACK", b"-NAK"

# App-level DLQ headers, first match wins (case-insensitive; the last value of a name counts).
H_SUBJECT = ("x-original-subject",)
H_STREAM = ("x-original-stream",)
H_SEQ = ("x-original-seq", "x-original-sequence")
H_CONSUMER = ("x-original-consumer",)
H_REASON = ("x-dlq-reason",)
H_ERROR = ("x-exception-message", "x-dead-letter-reason", "x-error-message")
H_ERROR_CLASS = ("x-exception-fqcn", "x-exception-class", "x-exception-type")
H_STACK = ("x-exception-stacktrace",)
H_FAILED_AT = ("x-failed-at", "x-dlq-failed-at")
H_DELIVERIES = ("x-delivery-count",)


class _Pulled:
    """One pulled batch and how many dead letters it gave (advisories can be skipped)."""

    __slots__ = ("msgs", "stored")

    def __init__(self, msgs: list[Msg]):
        self.msgs, self.stored = msgs, 0


async def ack_batch(js: JetStream, msgs: list[Msg]) -> None:
    """Acknowledge ``msgs`` with one round trip instead of one per message.

    Every message but the last gets a plain ``+ACK`` (no reply); the last one is acknowledged
    with a request, like AckSync. The server handles a consumer's acks in the order they arrive
    on the connection, so its reply means the whole batch is acknowledged and the next pull, even
    from another process, sees it. An ack lost with a dropped connection only means the message
    is redelivered after ``ack_wait``; the (source, position) UNIQUE stores it once.
    """
    if not msgs:
        return
    with translate("acknowledge"):
        for msg in msgs[:-1]:
            await js.nc.publish(msg.reply, ACK)
        await js.nc.request(msgs[-1].reply, ACK, timeout=js.timeout)


async def _drain(
    jsm: JetStreamContext,
    js: JetStream,
    stream: str,
    consumer: str,
    sink: Sink,
    build: Callable[[list[Msg]], Awaitable[list[HarvestedMessage]]],
    *,
    limit: int | None,
    batch_size: int,
    max_bytes: int,
    max_ack_pending: int = 0,
    after_ack: Callable[[list[Msg]], Awaitable[None]] | None = None,
) -> HarvestResult:
    """Pull, build, sink, then ack, batch after batch; the next batch is pulled and built while
    the previous one is stored (:func:`brokers.pipeline.store_ahead`). Anything that fails
    before a batch's ack naks it (explicitly, so the next harvest sees it at once) and re-raises.
    Two batches can be unacknowledged at once, so a batch is at most half the consumer's
    ``max_ack_pending``. The result's backlog is what the consumer has pending after."""
    result = HarvestResult()
    if max_ack_pending:
        batch_size = max(1, min(batch_size, max_ack_pending // 2))

    async def pulls():
        read = 0
        while limit is None or read < limit:
            want = batch_size if limit is None else min(batch_size, limit - read)
            msgs, drained = await js.pull(stream, consumer, want, max_bytes)
            if msgs:
                read += len(msgs)
                yield _Pulled(msgs)
            if drained or not msgs:
                result.exhausted = True
                return

    async def convert(pulled: _Pulled) -> list[HarvestedMessage]:
        batch = await build(pulled.msgs)
        pulled.stored = len(batch)
        return batch

    async def acknowledge(pulled: _Pulled) -> None:
        await ack_batch(js, pulled.msgs)
        if after_ack is not None:
            await after_ack(pulled.msgs)
        result.received += pulled.stored
        result.batches += 1 if pulled.stored else 0

    async def release(pulled: _Pulled) -> None:
        await js.settle(pulled.msgs, NAK)

    await store_ahead(pulls(), convert, sink, acknowledge=acknowledge, release=release)
    result.backlog = await admin.pending(jsm, stream, consumer)
    return result


# --------------------------------------------------------------------------------------------
# advisory mode


async def harvest_advisory(
    jsm: JetStreamContext, js: JetStream, source: SourceSpec, sink: Sink, *, limit, batch_size, max_bytes
) -> HarvestResult:
    capture = admin.capture_stream_name(source)
    durable = admin.durable_name(source)
    max_ack_pending = await admin.ensure_consumer(
        jsm,
        capture,
        durable,
        filter_subject=admin.advisory_filter(source.address),
        ack_wait=float(source.options.get("ack_wait", admin.DEFAULT_ACK_WAIT)),
        missing=NotPrepared(f"capture stream {capture} does not exist: the source needs preparing"),
    )
    originals = advisory.Originals(jsm, js)

    async def build(msgs: list[Msg]) -> list[HarvestedMessage]:
        # every failure advisory is one dead letter (unreadable ones stored raw, with a note);
        # the other consumer advisories a wider user capture also holds are acked and left
        failures = [msg for msg in msgs if advisory.is_failure_advisory(msg.subject)]
        return list(await asyncio.gather(*(advisory.from_capture(originals, msg) for msg in failures)))

    return await _drain(
        jsm,
        js,
        capture,
        durable,
        sink,
        build,
        limit=limit,
        batch_size=batch_size,
        max_bytes=max_bytes,
        max_ack_pending=max_ack_pending,
    )


# --------------------------------------------------------------------------------------------
# dlq_stream and subject modes: the application wrote the failure into headers


def from_app_dlq(
    *,
    position: str,
    subject: str,
    data: bytes,
    pairs: list[tuple[str, Any]],
    raw: bytes | None,
    stored_at: datetime | None,
    source: SourceSpec,
    extra: dict[str, Any],
) -> HarvestedMessage:
    prefix = str(source.options.get("strip_subject_prefix") or "")
    found = wire.last_values(pairs)  # one pass over the headers for the dozen lookups below
    original_subject = wire.header_text(found, H_SUBJECT)
    if not original_subject and prefix and subject.startswith(prefix):
        original_subject = subject[len(prefix) :]  # e.g. "dlq.orders.created" -> "orders.created"
    deliveries = wire.header_text(found, H_DELIVERIES)
    encoded = hdrs.encode_pairs(pairs)
    notes: list[str] = []
    failed_text = wire.header_text(found, H_FAILED_AT)
    failed_at = wire.parse_time(failed_text)
    if failed_text and failed_at is None:
        notes.append(reading.note("failed_at", f"{reading.shown(failed_text)} is not a time"))
    return HarvestedMessage(
        position=position,
        payload=data,
        headers=encoded,
        properties={
            "raw_headers_b64": wire.b64(raw),
            "timestamp": stored_at.isoformat() if stored_at else "",
            "nats_msg_id": wire.msg_id(found),
            "subject": subject,
        },
        origin=Origin(
            stream=wire.header_text(found, H_STREAM),
            subject=original_subject,
            seq=wire.int_or_none(wire.header_text(found, H_SEQ)),
            extra={
                **extra,
                "consumer": wire.header_text(found, H_CONSUMER),
                "deliveries": wire.int_or_none(deliveries) if deliveries else None,
            },
        ),
        reason=wire.header_text(found, H_REASON) or "dead_letter",
        error_class=wire.header_text(found, H_ERROR_CLASS),
        error_message=wire.header_text(found, H_ERROR),
        stacktrace=wire.header_text(found, H_STACK),
        failed_at=failed_at or stored_at,
        retry_count=hdrs.retry_count_of(encoded, notes),
        read_notes=notes,
    )


async def harvest_dlq_stream(
    jsm: JetStreamContext, js: JetStream, source: SourceSpec, sink: Sink, *, limit, batch_size, max_bytes
) -> HarvestResult:
    stream = source.address
    admin.validate_stream_name(stream)
    facts = await admin.stream_facts(jsm, stream)
    if not facts.exists:
        raise BrokerError(f"stream {stream} does not exist", permanent=True)
    if not source.remove_after_harvest and facts.retention != "limits":
        return await _peek_dlq_stream(js, facts, source, sink, limit=limit, batch_size=batch_size)
    durable = admin.durable_name(source)
    max_ack_pending = await admin.ensure_consumer(
        jsm,
        stream,
        durable,
        filter_subject=str(source.options.get("filter_subject") or ""),
        ack_wait=float(source.options.get("ack_wait", admin.DEFAULT_ACK_WAIT)),
        missing=BrokerError(f"stream {stream} does not exist", permanent=True),
    )

    async def build(msgs: list[Msg]) -> list[HarvestedMessage]:
        out = []
        for msg in msgs:
            meta = msg.metadata
            pairs, raw = header_pairs(msg)
            out.append(
                from_app_dlq(
                    position=f"{stream}:{meta.sequence.stream}",
                    subject=msg.subject,
                    data=msg.data,
                    pairs=pairs,
                    raw=raw,
                    stored_at=meta.timestamp,
                    source=source,
                    extra={"dlq_stream": stream, "dlq_seq": meta.sequence.stream, "dlq_subject": msg.subject},
                )
            )
        return out

    delete = source.remove_after_harvest and facts.retention == "limits"
    delete = delete and bool(source.options.get("delete_after_harvest"))

    async def delete_acked(msgs: list[Msg]) -> None:
        for msg in msgs:
            body = {"seq": msg.metadata.sequence.stream, "no_erase": True}
            with contextlib.suppress(BrokerError):  # already gone is fine
                await js.request(f"STREAM.MSG.DELETE.{stream}", body, f"delete {stream}#{body['seq']}")

    return await _drain(
        jsm,
        js,
        stream,
        durable,
        sink,
        build,
        limit=limit,
        batch_size=batch_size,
        max_bytes=max_bytes,
        max_ack_pending=max_ack_pending,
        after_ack=delete_acked if delete else None,
    )


async def _peek_dlq_stream(
    js: JetStream, facts: admin.StreamFacts, source: SourceSpec, sink: Sink, *, limit, batch_size
) -> HarvestResult:
    """Read without a consumer (nothing is acked, so nothing is deleted), from the cursor."""
    stream = source.address
    next_by = str(source.options.get("filter_subject") or ">")
    next_seq = max(int(source.cursor.get("next_seq") or 1), 1)
    result = HarvestResult()
    while not result.exhausted and (limit is None or result.received < limit):
        want = batch_size if limit is None else min(batch_size, limit - result.received)
        batch: list[HarvestedMessage] = []
        after = next_seq
        while len(batch) < want:
            try:
                stored = await js.get_message(stream, after, direct=facts.allow_direct, next_by=next_by)
            except MessageGone:
                result.exhausted = True
                break
            after = stored.seq + 1
            batch.append(
                from_app_dlq(
                    position=f"{stream}:{stored.seq}",
                    subject=stored.subject,
                    data=stored.data,
                    pairs=wire.parse_header_block(stored.raw_headers),
                    raw=stored.raw_headers,
                    stored_at=wire.parse_time(stored.time),
                    source=source,
                    extra={"dlq_stream": stream, "dlq_seq": stored.seq, "dlq_subject": stored.subject},
                )
            )
        if batch:
            await sink(batch)
            result.received += len(batch)
            result.batches += 1
        next_seq = after
        source.cursor["next_seq"] = next_seq  # only after the sink stored the batch
    # an upper bound: sequences deleted in between are counted too
    result.backlog = 0 if result.exhausted else max(0, facts.last_seq - next_seq + 1)
    return result


async def harvest_subject(nc, source: SourceSpec, sink: Sink, *, limit, batch_size) -> HarvestResult:
    listen = float(source.options.get("listen_seconds", 1.0))
    got: list[HarvestedMessage] = []
    with translate(f"listen on {source.address}"):
        sub = await nc.subscribe(source.address, queue=str(source.options.get("queue_group") or ""))
        try:
            await nc.flush()  # the subscription is live before the window opens
            deadline = time.monotonic() + listen
            while limit is None or len(got) < limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    msg = await sub.next_msg(timeout=remaining)
                except TimeoutError:
                    break
                got.append(_from_live(msg, source))
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
    # the sink runs after the window: what it fails to store is gone (core NATS keeps nothing)
    result = HarvestResult(exhausted=True)
    for start in range(0, len(got), batch_size):
        batch = got[start : start + batch_size]
        await sink(batch)
        result.received += len(batch)
        result.batches += 1
    return result


def _from_live(msg: Msg, source: SourceSpec) -> HarvestedMessage:
    pairs, raw = header_pairs(msg)
    digest = hashlib.sha256(msg.subject.encode() + (raw or b"") + msg.data).hexdigest()[:16]
    return from_app_dlq(
        position=f"{source.address}:{time.time_ns()}:{digest}",
        subject=msg.subject,
        data=msg.data,
        pairs=pairs,
        raw=raw,
        stored_at=datetime.now(UTC),
        source=source,
        extra={"dlq_subject": msg.subject},
    )
