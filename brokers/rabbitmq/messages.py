"""AMQP message <-> our dataclasses: harvested dead letters in, redrive publishes out.

Harvest side: every basic property, the delivery info, the headers in the lossless tagged
encoding of :mod:`brokers.headers`, the parsed ``x-death`` history and a content fingerprint used
as the position. Redrive side: header values back to the types pamqp writes, and the properties
a redriven copy may carry.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from aiormq.abc import DeliveredMessage
from pamqp import commands
from pamqp import encode as pamqp_encode

from brokers import headers as hdrs
from brokers import reading
from brokers.base import HarvestedMessage, HeaderPolicy, Origin, RedriveMessage

#: the AMQP 0-9-1 basic properties, as stored in ``HarvestedMessage.properties``.
PROPERTY_NAMES = (
    "message_id",
    "correlation_id",
    "content_type",
    "content_encoding",
    "type",
    "app_id",
    "timestamp",
    "priority",
    "reply_to",
    "delivery_mode",
    "expiration",
    "user_id",
    "cluster_id",
)
#: properties restored on a redriven copy. Never ``user_id`` (the broker validates it against the
#: publishing user: PRECONDITION_FAILED) nor ``expiration`` (the copy would expire again).
REDRIVE_PROPERTIES = (
    "content_type",
    "content_encoding",
    "message_id",
    "correlation_id",
    "timestamp",
    "type",
    "app_id",
    "reply_to",
    "priority",
)
PERSISTENT = 2
#: headers that change on every delivery of the same stored message; left out of the fingerprint.
NOT_FINGERPRINTED = ("x-delivery-count",)


# --------------------------------------------------------------------------------------------
# Non-UTF-8 long strings


class RawLongStr(str):
    """A long string (``S``) whose wire bytes are not UTF-8.

    pamqp decodes such a header to ``bytes`` but can only *encode* ``str`` (as ``S``, via
    ``value.encode("utf-8")``) or ``bytearray`` (as ``x``, a different wire type). This ``str``
    returns its original bytes from ``encode()``, so pamqp writes them back as the same ``S``.
    """

    __slots__ = ("raw",)

    def __new__(cls, raw: bytes | bytearray) -> RawLongStr:
        obj = super().__new__(cls, bytes(raw).decode("utf-8", "surrogateescape"))
        obj.raw = bytes(raw)
        return obj

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw

    def __repr__(self) -> str:
        return f"RawLongStr({self.raw!r})"

    def __reduce__(self):  # copy / pickle by the raw bytes, not the surrogate-escaped text
        return (RawLongStr, (self.raw,))


def _pamqp_keeps_raw_longstr() -> bool:
    try:
        return pamqp_encode.encode_table_value(RawLongStr(b"\xff")) == b"S\x00\x00\x00\x01\xff"
    except Exception:
        return False


#: checked once against the installed pamqp; if a future pamqp stops calling ``str.encode`` we
#: fall back to ``bytearray`` (wire type ``x``: same bytes, different type) rather than fail.
RAW_LONGSTR_SUPPORTED = _pamqp_keeps_raw_longstr()


def wire_value(value: Any) -> Any:
    """A decoded header value (:func:`brokers.headers.decode_value`) as pamqp can publish it.

    ``bytes`` (a non-UTF-8 longstr, or a Kafka/NATS value) go out as a long string with the same
    bytes; ``bytearray`` stays a byte array. Tables and arrays are converted recursively.
    """
    if isinstance(value, bytes):
        return RawLongStr(value) if RAW_LONGSTR_SUPPORTED else bytearray(value)
    if isinstance(value, dict):
        return {str(k): wire_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [wire_value(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Harvest


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    return None


def properties_of(message: DeliveredMessage) -> dict[str, Any]:
    """Every basic property (None when absent) plus the delivery's exchange/routing key/redelivered."""
    p = message.header.properties
    props = {
        "message_id": p.message_id,
        "correlation_id": p.correlation_id,
        "content_type": p.content_type,
        "content_encoding": p.content_encoding,
        "type": p.message_type,
        "app_id": p.app_id,
        "timestamp": _iso(p.timestamp),
        "priority": p.priority,
        "reply_to": p.reply_to,
        "delivery_mode": p.delivery_mode,
        "expiration": p.expiration,
        "user_id": p.user_id,
        "cluster_id": p.cluster_id or None,  # deprecated; pamqp reports absent as ""
    }
    props.update(
        exchange=message.exchange, routing_key=message.routing_key, redelivered=message.delivery.redelivered
    )
    return props


def _death(entry: Any, notes: list[str]) -> dict[str, Any]:
    """One ``x-death`` table as JSON-safe values (what is malformed is noted, not raised)."""
    if not isinstance(entry, dict):
        notes.append(reading.note("x-death", f"an entry is {type(entry).__name__}, not a table"))
        entry = {}
    keys = entry.get("routing-keys") or []
    count = entry.get("count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
        notes.append(reading.note("x-death count", f"{reading.shown(count)} is not an integer"))
        count = None
    time = entry.get("time")
    if time is not None and not isinstance(time, datetime):
        notes.append(reading.note("x-death time", f"{reading.shown(time)} is not a timestamp"))
    out = {
        "queue": hdrs.as_text(entry.get("queue")),
        "reason": hdrs.as_text(entry.get("reason")),
        "count": count,
        "time": _iso(time),
        "exchange": hdrs.as_text(entry.get("exchange")),
        "routing_keys": [hdrs.as_text(k) for k in keys] if isinstance(keys, list) else [hdrs.as_text(keys)],
    }
    if "original-expiration" in entry:
        out["original_expiration"] = hdrs.as_text(entry["original-expiration"])
    return out


def _json_value(value: Any) -> Any:
    """A header value as JSON (display text for the AMQP types JSON has no room for)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    return hdrs.node_text(hdrs.encode_value(value))


def fingerprint(queue: str, body: bytes, properties: dict[str, Any], encoded_headers: list) -> str:
    """sha256 over queue, body, basic properties and headers (x-death time/count included).

    A copy re-delivered after a crash (redelivered flag, quorum ``x-delivery-count``) hashes the
    same; a real second death differs in ``x-death``. Two byte-identical messages that died in the
    same second on the same queue are indistinguishable to any reader: they share a position.
    """

    def canon(node: dict) -> dict:
        if node.get("t") == "table":
            return {"t": "table", "v": sorted(([k, canon(v)] for k, v in node["v"]), key=lambda kv: kv[0])}
        if node.get("t") == "array":
            return {"t": "array", "v": [canon(v) for v in node["v"]]}
        return node

    doc = {
        "queue": queue,
        "properties": {name: properties.get(name) for name in PROPERTY_NAMES},
        "headers": sorted(
            ([name, canon(node)] for name, node in encoded_headers if name.lower() not in NOT_FINGERPRINTED),
            key=lambda kv: kv[0],
        ),
    }
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    digest.update(b"\x00")
    digest.update(body)
    return digest.hexdigest()


def harvested(queue: str, message: DeliveredMessage) -> HarvestedMessage:
    """One delivered dead letter as a :class:`HarvestedMessage` (the broker copy is not touched).

    Total: what cannot be read is noted in ``read_notes``; if the conversion fails as a whole,
    the raw body and headers are kept with a note (:func:`salvaged`)."""
    try:
        return _converted(queue, message)
    except Exception as exc:  # noqa: BLE001 - a poison message is stored, never raised
        return salvaged(queue, message, exc)


def _converted(queue: str, message: DeliveredMessage) -> HarvestedMessage:
    notes: list[str] = []
    raw_headers = message.header.properties.headers or {}
    encoded = hdrs.encode_mapping(raw_headers)
    properties = properties_of(message)
    body = bytes(message.body or b"")

    deaths_raw = raw_headers.get("x-death")
    if deaths_raw is not None and not isinstance(deaths_raw, list):
        notes.append(reading.note("x-death", f"{reading.shown(deaths_raw)} is not an array of tables"))
    deaths = [_death(d, notes) for d in deaths_raw] if isinstance(deaths_raw, list) else []
    last = deaths[0] if deaths else {}  # most recent first
    first = {
        part: hdrs.as_text(raw_headers.get(f"x-first-death-{part}"))
        for part in ("queue", "reason", "exchange")
        if f"x-first-death-{part}" in raw_headers
    }

    origin = Origin(
        queue=last.get("queue") or first.get("queue") or hdrs.get_text(encoded, "x-original-queue"),
        exchange=last.get("exchange", first.get("exchange", hdrs.get_text(encoded, "x-original-exchange"))),
        routing_keys=list(last.get("routing_keys") or []),
    )
    origin.routing_key = (
        origin.routing_keys[0] if origin.routing_keys else hdrs.get_text(encoded, "x-original-routingKey")
    )
    if not origin.routing_keys and origin.routing_key:
        origin.routing_keys = [origin.routing_key]
    if deaths:
        origin.extra.update(death_count=last["count"], death_time=last["time"], deaths=deaths)
    if first:
        origin.extra["first_death"] = first
    if "x-delivery-count" in raw_headers:
        origin.extra["delivery_count"] = _json_value(raw_headers["x-delivery-count"])

    failed_at = last.get("time")
    return HarvestedMessage(
        position=position_of(queue, body, properties, encoded),
        payload=body,
        headers=encoded,
        properties=properties,
        key=None,
        origin=origin,
        reason=last.get("reason") or first.get("reason", ""),
        error_class=hdrs.get_text(encoded, "x-exception-fqcn") or hdrs.get_text(encoded, "x-exception-class"),
        error_message=(
            hdrs.get_text(encoded, "x-exception-message") or hdrs.get_text(encoded, "x-dead-letter-reason")
        ),
        stacktrace=hdrs.get_text(encoded, "x-exception-stacktrace"),
        failed_at=datetime.fromisoformat(failed_at) if failed_at else datetime.now(UTC),
        retry_count=hdrs.retry_count_of(encoded, notes),
        read_notes=notes,
    )


def position_of(queue: str, body: bytes, properties: dict[str, Any], encoded_headers: list) -> str:
    return f"{queue}:{fingerprint(queue, body, properties, encoded_headers)}"


def salvaged(queue: str, message: DeliveredMessage, exc: Exception) -> HarvestedMessage:
    """The raw body (and headers / properties when they can be encoded) with a note saying why."""
    notes = [reading.salvage_note(exc)]
    body = bytes(message.body or b"")
    try:
        encoded = hdrs.encode_mapping(message.header.properties.headers or {})
    except Exception as err:  # noqa: BLE001
        encoded = []
        notes.append(reading.note("headers", f"{type(err).__name__}: {err}"))
    try:
        properties = properties_of(message)
    except Exception as err:  # noqa: BLE001
        properties = {}
        notes.append(reading.note("properties", f"{type(err).__name__}: {err}"))
    # the same body and headers always hash the same: a redelivery is still a duplicate
    try:
        position = position_of(queue, body, properties, encoded)
    except Exception:  # noqa: BLE001
        position = f"{queue}:{hashlib.sha256(body).hexdigest()}"
    return HarvestedMessage(
        position=position,
        payload=body,
        headers=encoded,
        properties=properties,
        reason="unreadable",
        failed_at=datetime.now(UTC),
        read_notes=notes,
    )


# --------------------------------------------------------------------------------------------
# Redrive


def redrive_headers(message: RedriveMessage, policy: HeaderPolicy) -> dict[str, Any]:
    """Copied headers (per ``policy``) + tool-owned retry/origin headers + ``policy.extra``."""
    out: dict[str, Any] = {
        name: wire_value(hdrs.decode_value(node))
        for name, node in hdrs.filter_for_redrive(message.headers, policy)
    }
    origin = message.origin
    origin_headers = {
        "x-original-exchange": origin.exchange,
        "x-original-routingKey": origin.routing_key,
        "x-original-queue": origin.queue,
    }
    retry = hdrs.retry_headers(
        retry_count=message.retry_count, redrive_id=message.redrive_id, origin_headers=origin_headers
    )
    out.update(retry)  # x-retry-count is an int: pamqp writes the smallest AMQP integer type
    out.update(policy.extra)
    if policy.spring_retry_count:
        # Spring AMQP >= 3.2 reads ``retry-count`` as a number; pamqp picks the integer width by
        # value (there is no way to force the 64-bit 'l' type), which Java reads as a Number.
        out["retry-count"] = message.retry_count + 1
    return out


def redrive_properties(message: RedriveMessage, headers: dict[str, Any]) -> commands.Basic.Properties:
    """Basic properties of the redriven copy: the harvested ones that are safe, made persistent."""
    props = message.properties or {}
    kept = {name: props.get(name) for name in REDRIVE_PROPERTIES}
    timestamp = kept.pop("timestamp")
    if isinstance(timestamp, str):
        timestamp = datetime.fromisoformat(timestamp)
    return commands.Basic.Properties(
        content_type=kept["content_type"],
        content_encoding=kept["content_encoding"],
        headers=headers,
        delivery_mode=PERSISTENT,
        priority=kept["priority"],
        correlation_id=kept["correlation_id"],
        reply_to=kept["reply_to"],
        message_id=kept["message_id"],
        timestamp=timestamp if isinstance(timestamp, datetime) else None,
        message_type=kept["type"],
        app_id=kept["app_id"],
    )
