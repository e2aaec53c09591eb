"""Lossless, order- and type-preserving header encoding shared by the adapters.

Headers are stored as an ordered list of ``[name, node]`` pairs (names may repeat: Kafka allows
it). A node is a small JSON object tagged with its wire type, so a round trip through Postgres
gives back the exact value and type:

==============  ==========================================================================
``t``           ``v``
==============  ==========================================================================
``str``         the string; if it contains NUL (which Postgres jsonb rejects) it is kept
                as ``{"t": "str", "b64": ...}`` instead
``bytes``       base64 of raw bytes (Kafka values, AMQP longstr that is not UTF-8)
``bytearray``   base64 (AMQP byte array ``x``)
``int``         integer
``float``       ``repr()`` of the float (NaN and infinities survive)
``decimal``     ``str()`` of the Decimal
``timestamp``   ISO-8601 UTC datetime
``bool``        true / false
``void``        (no ``v``) AMQP void / Kafka null value
``array``       list of nodes
``table``       list of ``[key, node]`` pairs
==============  ==========================================================================

This module also holds the redrive header rules (what is broker-owned, what is diagnostic, the
retry headers) so every adapter applies the same policy.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from . import reading
from .base import HeaderPolicy

# --------------------------------------------------------------------------------------------
# Nodes


def _b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


def _encode_str(value: str) -> dict:
    if "\x00" in value:
        return {"t": "str", "b64": _b64(value.encode("utf-8", "surrogatepass"))}
    return {"t": "str", "v": value}


#: the common exact types, encoded without walking the isinstance chain below
_FAST = {
    str: _encode_str,
    bytes: lambda value: {"t": "bytes", "v": _b64(value)},
    int: lambda value: {"t": "int", "v": value},
    bool: lambda value: {"t": "bool", "v": value},
    type(None): lambda value: {"t": "void"},
}


def encode_value(value: Any) -> dict:
    """Encode a Python header value (as aio-pika / nats-py / confluent-kafka give it) to a node."""
    fast = _FAST.get(type(value))
    if fast is not None:
        return fast(value)
    if value is None:
        return {"t": "void"}
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": value}
    if isinstance(value, float):
        return {"t": "float", "v": repr(value)}
    if isinstance(value, Decimal):
        return {"t": "decimal", "v": str(value)}
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return {"t": "timestamp", "v": value.astimezone(UTC).isoformat()}
    if isinstance(value, str):
        if "\x00" in value:
            return {"t": "str", "b64": _b64(value.encode("utf-8", "surrogatepass"))}
        return {"t": "str", "v": value}
    if isinstance(value, bytearray):
        return {"t": "bytearray", "v": _b64(value)}
    if isinstance(value, bytes | memoryview):
        return {"t": "bytes", "v": _b64(bytes(value))}
    if isinstance(value, dict):
        return {"t": "table", "v": [[str(k), encode_value(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return {"t": "array", "v": [encode_value(v) for v in value]}
    raise TypeError(f"cannot encode header value of type {type(value).__name__}")


def decode_value(node: dict) -> Any:
    """The Python value of a node (bytes for ``bytes``, bytearray for ``bytearray``)."""
    t = node.get("t")
    if t == "void":
        return None
    if t == "str":
        if "b64" in node:
            return _unb64(node["b64"]).decode("utf-8", "surrogatepass")
        return node["v"]
    if t == "bytes":
        return _unb64(node["v"])
    if t == "bytearray":
        return bytearray(_unb64(node["v"]))
    if t in ("int", "bool"):
        return node["v"]
    if t == "float":
        return float(node["v"])
    if t == "decimal":
        return Decimal(node["v"])
    if t == "timestamp":
        return datetime.fromisoformat(node["v"])
    if t == "table":
        return {k: decode_value(v) for k, v in node["v"]}
    if t == "array":
        return [decode_value(v) for v in node["v"]]
    raise ValueError(f"unknown header node type {t!r}")


def node_text(node: dict) -> str:
    """A human-readable string for display and filtering (never used to re-send)."""
    t = node.get("t")
    if t == "void":
        return ""
    if t in ("bytes", "bytearray"):
        raw = _unb64(node["v"])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + raw.hex()
    if t == "str" and "b64" in node:
        return decode_value(node)
    if t == "table":
        return "{" + ", ".join(f"{k}: {node_text(v)}" for k, v in node["v"]) + "}"
    if t == "array":
        return "[" + ", ".join(node_text(v) for v in node["v"]) + "]"
    return str(node.get("v", ""))


# --------------------------------------------------------------------------------------------
# Whole header sets


def encode_mapping(headers: dict | None) -> list:
    """AMQP / NATS style ``{name: value}`` -> ``[[name, node], ...]`` (insertion order kept)."""
    return [[str(k), encode_value(v)] for k, v in (headers or {}).items()]


def decode_mapping(headers: list) -> dict:
    """``[[name, node], ...]`` -> ``{name: value}``; a repeated name keeps its last value."""
    return {name: decode_value(node) for name, node in headers}


def encode_pairs(headers: Iterable[tuple[str, Any]] | None) -> list:
    """Kafka style ``[(name, bytes | None), ...]`` -> ``[[name, node], ...]`` (duplicates kept)."""
    return [[name, encode_value(value)] for name, value in (headers or [])]


def decode_pairs(headers: list) -> list[tuple[str, Any]]:
    return [(name, decode_value(node)) for name, node in headers]


def get(headers: list, name: str, default: Any = None) -> Any:
    """The decoded value of the LAST header called ``name`` (case-insensitive)."""
    lname = name.lower()
    for key, node in reversed(headers):
        if key.lower() == lname:
            return decode_value(node)
    return default


def as_text(value: Any) -> str:
    """A decoded header value as text: "" for None (absent or null), bytes as UTF-8 with invalid
    sequences replaced, anything else ``str()``."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def get_text(headers: list, name: str, default: str = "") -> str:
    lname = name.lower()
    for key, node in reversed(headers):
        if key.lower() == lname:
            return node_text(node)
    return default


def text_pairs(headers: list) -> list[tuple[str, str, str]]:
    """``(name, type, display text)`` for each header, in order."""
    return [(name, node.get("t", ""), node_text(node)) for name, node in headers]


# --------------------------------------------------------------------------------------------
# Redrive policy

#: set by the broker itself; never copied onto a redriven message.
BROKER_OWNED_PREFIXES = (
    "x-death",
    "x-first-death-",
    "x-last-death-",
    "x-delivery-count",
    "x-stream-offset",
    "nats-",
)
#: dead-letter diagnostics written by frameworks; kept in the database, stripped on redrive.
DIAGNOSTIC_PREFIXES = (
    "kafka_dlt-",
    "__connect.errors.",
    "retry_topic-",
    "x-exception-",
    "x-dead-letter-reason",
    "x-failed-at",
)
#: headers this tool sets on every redrive (old values are replaced).
RETRY_HEADER_NAMES = ("x-retry-count", "x-dlq-redrive-id", "x-dlq-redriven-at", "retry-count")
ORIGIN_HEADER_PREFIX = "x-original-"


def _starts(name: str, prefixes: Iterable[str]) -> bool:
    lname = name.lower()
    return any(lname.startswith(p.lower()) for p in prefixes)


def filter_for_redrive(headers: list, policy: HeaderPolicy | None) -> list:
    """The original headers a redrive copies, per ``policy`` (encoded pairs in, encoded out).

    Drops broker-owned headers always, diagnostics unless kept, our own retry/origin headers
    (they are set fresh), and any ``policy.strip`` prefixes.
    """
    policy = policy or HeaderPolicy()
    if not policy.copy_original:
        return []
    drop = [*BROKER_OWNED_PREFIXES, *RETRY_HEADER_NAMES, ORIGIN_HEADER_PREFIX, *policy.strip]
    if not policy.keep_diagnostics:
        drop += list(DIAGNOSTIC_PREFIXES)
    return [[name, node] for name, node in headers if not _starts(name, drop)]


#: the ``retry_count`` column's range (a PostgreSQL positive 32-bit integer).
MAX_RETRY_COUNT = 2**31 - 1


def retry_count_of(headers: list, notes: list[str] | None = None) -> int:
    """The ``x-retry-count`` a message carries, within 0..MAX_RETRY_COUNT (0 when absent).

    A value that is not an integer, is negative or is beyond the column's range (an AMQP int64
    may hold 3000000000) is replaced by 0 / MAX_RETRY_COUNT, and said so in ``notes``."""
    value = get(headers, "x-retry-count")
    if value is None:
        return 0
    text = as_text(value)
    why = ""
    try:
        count = int(text.strip()) if not isinstance(value, bool | float) else None
    except ValueError:
        count = None
    if count is None:
        count, why = 0, "is not an integer; 0 is stored"
    elif count < 0:
        count, why = 0, "is negative; 0 is stored"
    elif count > MAX_RETRY_COUNT:
        count, why = MAX_RETRY_COUNT, f"exceeds {MAX_RETRY_COUNT}; {MAX_RETRY_COUNT} is stored"
    if why and notes is not None:
        notes.append(reading.note("retry_count", f"x-retry-count {reading.shown(value)} {why}"))
    return count


def retry_headers(
    *, retry_count: int, redrive_id: str, origin_headers: dict[str, Any]
) -> list[tuple[str, Any]]:
    """The tool-owned headers for one redrive, as ``(name, python value)``.

    ``retry_count`` is the count the message carried; the new one is ``retry_count + 1``.
    ``origin_headers`` with a None value are left out ("" is kept: it is AMQP's default exchange).
    Adapters encode values for their wire (AMQP int / Kafka and NATS decimal strings).
    """
    out: list[tuple[str, Any]] = [
        ("x-retry-count", retry_count + 1),
        ("x-dlq-redrive-id", redrive_id),
        ("x-dlq-redriven-at", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")),
    ]
    out += [(name, value) for name, value in origin_headers.items() if value is not None]
    return out
