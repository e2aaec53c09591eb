"""What the database can hold: a harvested message fitted to the ``dead_letter`` columns.

The adapters already read every field totally (``brokers.reading``); this is the last line before
PostgreSQL, so that a message's content never makes the insert fail. A content error would be a
``DataError`` / ``IntegrityError``, which the harvester must not take for a database outage and
retry forever. Integers are kept within their column's range and NUL (which PostgreSQL text and
jsonb refuse) is replaced in header names and table keys; each change is noted on the message.

If the database still refuses a row, :func:`dead_letters_store` isolates it and stores
:func:`minimal` of it instead: the raw bytes with a note.
"""

from __future__ import annotations

import base64
import json

from brokers import reading
from brokers.base import HarvestedMessage, Origin
from brokers.headers import MAX_RETRY_COUNT

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
NUL = "\x00"


def fitted(message: HarvestedMessage) -> HarvestedMessage:
    """``message`` (changed in place) with every value its column cannot hold replaced and
    noted: retry_count within 0..2**31-1, origin partition within int32, offset and sequence
    within int64 (None otherwise), NUL in header names replaced by U+FFFD."""
    notes = message.read_notes
    count = message.retry_count
    if type(count) is not int or not 0 <= count <= MAX_RETRY_COUNT:
        fallback = MAX_RETRY_COUNT if type(count) is int and count > 0 else 0
        message.retry_count = reading.bounded_int(
            count, notes, field="retry_count", low=0, high=MAX_RETRY_COUNT, fallback=fallback
        )
    o = message.origin
    if o.partition is not None and not INT32[0] <= o.partition <= INT32[1]:
        o.partition = reading.bounded_int(
            o.partition, notes, field="origin partition", low=INT32[0], high=INT32[1], fallback=None
        )
    if o.offset is not None and not INT64[0] <= o.offset <= INT64[1]:
        o.offset = reading.bounded_int(
            o.offset, notes, field="origin offset", low=INT64[0], high=INT64[1], fallback=None
        )
    if o.seq is not None and not INT64[0] <= o.seq <= INT64[1]:
        o.seq = reading.bounded_int(
            o.seq, notes, field="origin sequence", low=INT64[0], high=INT64[1], fallback=None
        )
    if _headers_hold_nul(message.headers):
        message.headers = _without_nul(message.headers)
        notes.append(reading.note("header names", "NUL is not storable; stored as U+FFFD"))
    return message


def _node_holds_nul(node) -> bool:
    kind = node.get("t") if isinstance(node, dict) else None
    if kind == "table":
        return any(NUL in key or _node_holds_nul(value) for key, value in node["v"])
    if kind == "array":
        return any(_node_holds_nul(value) for value in node["v"])
    return False


def _headers_hold_nul(headers: list) -> bool:
    # header values never hold NUL (the codec keeps such strings as base64); names and table keys may
    for name, node in headers:
        if NUL in name:
            return True
        kind = node.get("t")
        if (kind == "table" or kind == "array") and _node_holds_nul(node):
            return True
    return False


def _node_without_nul(node):
    kind = node.get("t") if isinstance(node, dict) else None
    if kind == "table":
        return {"t": "table", "v": [[k.replace(NUL, "\ufffd"), _node_without_nul(v)] for k, v in node["v"]]}
    if kind == "array":
        return {"t": "array", "v": [_node_without_nul(v) for v in node["v"]]}
    return node


def _without_nul(headers: list) -> list:
    return [[name.replace(NUL, "\ufffd"), _node_without_nul(node)] for name, node in headers]


def minimal(message: HarvestedMessage, refused: Exception) -> HarvestedMessage:
    """What is always storable of a message the database refused: its position, raw payload and
    key, and its headers as base64 JSON text (a property), with a note saying why."""
    try:
        headers_text = json.dumps(message.headers, default=str)
    except (TypeError, ValueError):
        headers_text = repr(message.headers)
    cause = str(refused).strip().splitlines()[0] if str(refused).strip() else type(refused).__name__
    return HarvestedMessage(
        position=message.position,
        payload=bytes(message.payload),
        payload_available=message.payload_available,
        key=message.key,
        properties={"headers_json_b64": base64.b64encode(headers_text.encode("utf-8", "replace")).decode()},
        origin=Origin(extra={"format": "unreadable"}),
        reason="unreadable",
        read_notes=[
            *message.read_notes,
            reading.note("message", f"the database refused it ({cause}); stored with its raw bytes only"),
        ],
    )
