"""Advisory mode: each captured MAX_DELIVERIES / MSG_TERMINATED advisory as one dead letter.

The advisory names ``stream`` + ``stream_seq``; the original is fetched from the watched stream
by sequence (direct get when the stream allows it, else STREAM.MSG.GET; both keep the exact
header block). Conversion is total: an advisory that is not JSON, lacks its stream or sequence,
or names an original that cannot be fetched is still stored (the advisory's raw bytes, or the
metadata with ``payload_available=False``) with a "could not read" note.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from brokers import headers as hdrs
from brokers import reading
from brokers.base import BrokerError, HarvestedMessage, Origin

from . import admin, wire
from .connection import JetStream, MessageGone, StoredMessage

ADVISORY_REASONS = {
    "io.nats.jetstream.advisory.v1.max_deliver": "max_deliveries",
    "io.nats.jetstream.advisory.v1.terminated": "terminated",
}
PAYLOAD_GONE = "payload no longer available on the broker (removed by retention)"
#: parallel original-message fetches per batch
FETCH_CONCURRENCY = 16


class Originals:
    """Fetches originals named by advisories; stream facts are looked up once per harvest."""

    def __init__(self, jsm: JetStreamContext, js: JetStream):
        self.jsm, self.js = jsm, js
        self.facts: dict[str, asyncio.Task] = {}
        self.limit = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def get(self, stream: str, seq: int, failed_at: datetime | None) -> StoredMessage | str:
        """The stored original, or why it is gone."""
        if stream not in self.facts:
            self.facts[stream] = asyncio.ensure_future(admin.stream_facts(self.jsm, stream))
        facts = await self.facts[stream]
        if not facts.exists:
            return f"payload no longer available on the broker (stream {stream} was deleted)"
        if failed_at and facts.created and failed_at < facts.created:
            return f"payload no longer available on the broker (stream {stream} was re-created)"
        async with self.limit:
            try:
                return await self.js.get_message(stream, seq, direct=facts.allow_direct)
            except MessageGone:
                return PAYLOAD_GONE


_KIND_REASONS = {"MAX_DELIVERIES": "max_deliveries", "MSG_TERMINATED": "terminated"}


def _reason_of(event_type: object, subject: str) -> str:
    """From the advisory's type, else from its subject (``...CONSUMER.<KIND>.<stream>.<consumer>``)."""
    reason = ADVISORY_REASONS.get(event_type) if isinstance(event_type, str) else None
    if reason:
        return reason
    tail = subject[len(admin.ADVISORY_PREFIX) :] if subject.startswith(admin.ADVISORY_PREFIX) else ""
    return _KIND_REASONS.get(tail.split(".", 1)[0], "unreadable")


def is_failure_advisory(subject: str) -> bool:
    """Whether a captured advisory's subject is a MAX_DELIVERIES / MSG_TERMINATED one. A user's
    wider capture stream (e.g. ``$JS.EVENT.ADVISORY.>``) also holds other consumer advisories
    (created, NAKed, ...) that the durable's filter lets through: those are not dead letters."""
    tail = subject[len(admin.ADVISORY_PREFIX) :] if subject.startswith(admin.ADVISORY_PREFIX) else ""
    return tail.split(".", 1)[0] in _KIND_REASONS


async def from_capture(originals: Originals, msg: Msg) -> HarvestedMessage:
    """One captured advisory as a dead letter. Total: an advisory that is not JSON, lacks the
    stream or sequence, or names an original that cannot be fetched is stored with its raw bytes
    and a note. Only a transient broker error (the batch is retried) is raised."""
    try:
        event = json.loads(msg.data)
    except (ValueError, RecursionError) as exc:
        return _unreadable_advisory(msg, {}, reading.note("advisory", f"invalid JSON ({exc})"))
    if not isinstance(event, dict):
        why = f"a JSON {type(event).__name__}, not an object"
        return _unreadable_advisory(msg, {}, reading.note("advisory", why))
    stream, seq = event.get("stream"), wire.int_or_none(event.get("stream_seq"))
    if not isinstance(stream, str) or not stream:
        return _unreadable_advisory(msg, event, reading.note("advisory stream", f"{reading.shown(stream)}"))
    if seq is None or not 1 <= seq < 2**63:
        why = f"{reading.shown(event.get('stream_seq'))} is not a stream sequence"
        return _unreadable_advisory(msg, event, reading.note("advisory stream_seq", why))
    try:
        return await _from_advisory(originals, event, stream, seq, msg.subject)
    except BrokerError as exc:
        if not exc.permanent:
            raise
        return _unreadable_advisory(msg, event, reading.note("original message", str(exc)))
    except Exception as exc:  # noqa: BLE001 - a poison advisory is stored, never raised
        return _unreadable_advisory(msg, event, reading.salvage_note(exc))


def _unreadable_advisory(msg: Msg, event: dict, why: str) -> HarvestedMessage:
    """The advisory itself (its raw bytes as the payload) when it does not lead to an original."""
    meta = msg.metadata
    stamp = meta.timestamp
    return HarvestedMessage(
        # the capture stream's own sequence: stable across re-reads of the same advisory
        position=f"advisory:{meta.stream}:{meta.sequence.stream}",
        payload=msg.data,
        properties={
            "payload_is_advisory": True,
            "advisory_subject": msg.subject,
            "capture_stream": meta.stream,
            "capture_seq": meta.sequence.stream,
            "timestamp": stamp.isoformat() if stamp else "",
        },
        origin=Origin(extra={"advisory_subject": msg.subject, "advisory_id": str(event.get("id") or "")}),
        reason=_reason_of(event.get("type"), msg.subject),
        error_message=str(event.get("reason") or ""),
        failed_at=stamp,
        read_notes=[why, "the payload is the advisory as captured, not the failed message"],
    )


async def _from_advisory(
    originals: Originals, event: dict, stream: str, seq: int, subject: str
) -> HarvestedMessage:
    notes: list[str] = []
    admin.validate_stream_name(stream)
    consumer = str(event.get("consumer") or "")
    failed_at = wire.parse_time(event.get("timestamp"))
    if failed_at is None and event.get("timestamp") not in (None, ""):
        notes.append(reading.note("failed_at", f"{reading.shown(event.get('timestamp'))} is not a time"))
    original = await originals.get(stream, seq, failed_at)
    term_reason = str(event.get("reason") or "")  # MSG_TERMINATED, servers 2.10.4+
    origin = Origin(
        stream=stream,
        seq=seq,
        extra={
            "consumer": consumer,
            "deliveries": event.get("deliveries"),
            "advisory_id": str(event.get("id") or ""),
            "advisory_type": str(event.get("type") or ""),
            "domain": str(event.get("domain") or ""),
            "consumer_seq": event.get("consumer_seq"),
        },
    )
    message = HarvestedMessage(
        position=f"{stream}:{seq}:{consumer}",
        payload=b"",
        origin=origin,
        reason=_reason_of(event.get("type"), subject),
        error_message=term_reason,
        failed_at=failed_at,
        read_notes=notes,
    )
    if isinstance(original, str):
        message.payload_available = False
        message.error_message = term_reason or original
        message.properties = {"payload_unavailable": original}
        notes.append(reading.note("payload", original))
        return message
    pairs = wire.parse_header_block(original.raw_headers)
    origin.subject = original.subject
    message.payload = original.data
    message.headers = hdrs.encode_pairs(pairs)
    message.retry_count = hdrs.retry_count_of(message.headers, notes)
    message.properties = {
        "raw_headers_b64": wire.b64(original.raw_headers),
        "timestamp": original.time,
        "nats_msg_id": wire.msg_id(pairs),
        "fetched_via": original.via,
    }
    return message
