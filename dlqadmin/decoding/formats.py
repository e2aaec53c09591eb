"""Self-describing bodies: JSON, MessagePack, CBOR, text; and the JSON form of their values.

Values that JSON has no type for are shown in a form that maps back exactly
(``from_jsonable``), so an edited MessagePack or CBOR body re-encodes to the same types:
bytes are ``{"$bytes": "<base64>"}``; a datetime is its ISO-8601 text; non-string map keys
become their text; NaN and infinities become text.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import json
import math
import uuid

import cbor2
import msgpack

MAX_DEPTH = 200

#: content types (the part before any ";") that say which format a body is in
CONTENT_TYPES = {
    "application/msgpack": "msgpack",
    "application/x-msgpack": "msgpack",
    "application/vnd.msgpack": "msgpack",
    "application/cbor": "cbor",
    "application/json": "json",
    "text/json": "json",
}

LABELS = {"json": "JSON", "msgpack": "MessagePack", "cbor": "CBOR", "text": "text (UTF-8)"}


class FormatError(ValueError):
    """The body is not in the format it was said (or guessed) to be in."""


def format_of_content_type(content_type: str) -> str | None:
    """``json``, ``msgpack`` or ``cbor`` for a content type that names one (``+json`` too)."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base in CONTENT_TYPES:
        return CONTENT_TYPES[base]
    if base.endswith("+json"):
        return "json"
    if base.endswith(("+msgpack", "/x-msgpack")):
        return "msgpack"
    if base.endswith("+cbor"):
        return "cbor"
    return None


def parse(fmt: str, data: bytes):
    """The value ``data`` holds in format ``fmt``, in its JSON form; raises FormatError."""
    try:
        if fmt == "json":
            return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
        if fmt == "msgpack":
            return jsonable(msgpack.unpackb(data, raw=False, strict_map_key=False, timestamp=3))
        if fmt == "cbor":
            return jsonable(cbor2.loads(data))
        if fmt == "text":
            return data.decode("utf-8")
    except RecursionError:
        raise FormatError(f"{LABELS[fmt]}: nested deeper than can be shown") from None
    except UnicodeDecodeError as exc:
        raise FormatError(f"{LABELS[fmt]}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except Exception as exc:  # noqa: BLE001 - the libraries raise many types for bad input
        raise FormatError(f"{LABELS[fmt]}: {_reason(exc)}") from None
    raise ValueError(f"unknown format {fmt!r}")


def serialize(fmt: str, value) -> bytes:
    """``value`` (its JSON form) encoded in format ``fmt``: the inverse of ``parse``."""
    if fmt == "json":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if fmt == "msgpack":
        return msgpack.packb(from_jsonable(value), use_bin_type=True)
    if fmt == "cbor":
        return cbor2.dumps(from_jsonable(value))
    if fmt == "text":
        if not isinstance(value, str):
            raise FormatError("a text body is edited as one JSON string")
        return value.encode("utf-8")
    raise ValueError(f"unknown format {fmt!r}")


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, msgpack.OutOfData | cbor2.CBORDecodeEOF) or "premature end" in text.lower():
        return f"{text} (truncated)"
    return text


def jsonable(value, depth: int = 0):
    """``value`` as JSON-compatible data (see the module docstring for the mapping)."""
    if depth > MAX_DEPTH:
        raise RecursionError
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {_key(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, msgpack.ExtType):
        return {"$ext": value.code, "$bytes": base64.b64encode(value.data).decode("ascii")}
    if isinstance(value, msgpack.Timestamp):
        return value.to_datetime().isoformat()
    if isinstance(value, cbor2.CBORTag):
        return {"$tag": value.tag, "value": jsonable(value.value, depth + 1)}
    if isinstance(value, cbor2.CBORSimpleValue):
        return {"$simple": int(value.value)}
    return str(value)


def _key(key) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes):
        return key.decode("utf-8", "backslashreplace")
    return json.dumps(jsonable(key), sort_keys=True) if isinstance(key, tuple | dict) else str(key)


def from_jsonable(value, depth: int = 0):
    """The inverse of ``jsonable`` for what an edit can carry: ``{"$bytes": ...}`` becomes
    bytes again, ``{"$ext": n, "$bytes": ...}`` a MessagePack extension; the rest is as is."""
    if depth > MAX_DEPTH:
        raise FormatError("nested deeper than can be encoded")
    if isinstance(value, dict):
        if set(value) == {"$bytes"} and isinstance(value["$bytes"], str):
            return _unbase64(value["$bytes"])
        if set(value) == {"$ext", "$bytes"} and isinstance(value["$ext"], int):
            return msgpack.ExtType(value["$ext"], _unbase64(value["$bytes"]))
        return {k: from_jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [from_jsonable(v, depth + 1) for v in value]
    return value


def _unbase64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise FormatError(f"{text[:40]!r} is not base64 (a $bytes value)") from None
