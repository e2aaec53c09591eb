"""Byte-level helpers for the NATS wire format: header blocks, status replies, timestamps.

nats-py hands received headers over as a ``dict[str, str]``: repeated names collapse to the
last value, values lose surrounding whitespace and non-UTF-8 bytes become U+FFFD (and the
non-direct ``get_msg`` path goes through ``email.parser``, which mangles any non-ASCII value).
Harvesting must be lossless, so the adapter keeps the raw header block and parses it here.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

HDR_LINE = b"NATS/1.0"
CRLF = b"\r\n"

#: headers a direct get (``$JS.API.DIRECT.GET``) appends after the stored message's own block.
DIRECT_GET_HEADERS = frozenset(
    {
        "nats-stream",
        "nats-subject",
        "nats-sequence",
        "nats-time-stamp",
        "nats-num-pending",
        "nats-last-sequence",
    }
)


def parse_header_block(block: bytes | None) -> list[tuple[str, str | bytes]]:
    """``NATS/1.0\\r\\nName: value\\r\\n...\\r\\n\\r\\n`` -> ordered ``(name, value)`` pairs.

    Duplicates and order are kept. A value is ``str`` when it is valid UTF-8 (the normal case;
    ``café`` and emoji come back exactly) and ``bytes`` otherwise, so nothing is replaced.
    Optional whitespace around a value is not part of it (as in HTTP); the exact bytes stay
    available in the block itself.
    """
    if not block:
        return []
    pairs: list[tuple[str, str | bytes]] = []
    for line in bytes(block).split(CRLF)[1:]:  # the first line is "NATS/1.0[ status]"
        name, sep, value = line.partition(b":")
        if not sep or not name.strip():
            continue
        raw = value.strip(b" \t")
        try:
            decoded: str | bytes = raw.decode("utf-8")
        except UnicodeDecodeError:
            decoded = raw
        pairs.append((name.strip().decode("utf-8", "replace"), decoded))
    return pairs


def status_of(block: bytes | None) -> tuple[str, str]:
    """The inline status of a control reply (``NATS/1.0 404 No Messages``) as (code, text)."""
    if not block:
        return "", ""
    first = bytes(block).split(CRLF, 1)[0][len(HDR_LINE) :].strip().decode("utf-8", "replace")
    code, _, text = first.partition(" ")
    return code, text


def split_direct_get(block: bytes) -> tuple[bytes | None, dict[str, str]]:
    """Separate a direct-get reply's header block into the stored message's own block (exact
    bytes; None when it had no headers) and the ``Nats-Stream`` / ``Nats-Subject`` /
    ``Nats-Sequence`` / ``Nats-Time-Stamp`` lines the server appended after it.

    The server appends by dropping the block's final CRLF and writing ``Name: value\\r\\n``
    lines, so they are the trailing lines; each name is taken at most once (a republished
    message may legitimately carry the same names in its own block).
    """
    lines = bytes(block).split(CRLF)
    while lines and lines[-1] == b"":
        lines.pop()
    meta: dict[str, str] = {}
    while len(lines) > 1:
        name, sep, value = lines[-1].partition(b":")
        key = name.strip().decode("utf-8", "replace").lower()
        if not sep or key not in DIRECT_GET_HEADERS or key in meta:
            break
        meta[key] = value.strip().decode("utf-8", "replace")
        lines.pop()
    if len(lines) <= 1:
        return None, meta
    return CRLF.join(lines) + CRLF + CRLF, meta


def b64(data: bytes | None) -> str:
    return base64.b64encode(data).decode("ascii") if data else ""


def parse_time(value: object) -> datetime | None:
    """RFC 3339 (nanoseconds allowed, ``Z``), epoch seconds or milliseconds -> aware UTC datetime."""
    if value in (None, ""):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    try:
        if text.isdigit():
            number = int(text)
            return datetime.fromtimestamp(number / 1000 if number > 10**11 else number, UTC)
        if "." in text:  # Python keeps microseconds; the server writes nanoseconds
            head, _, tail = text.partition(".")
            digits = len(tail) - len(tail.lstrip("0123456789"))
            text = f"{head}.{tail[:digits][:6]}{tail[digits:]}"
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# Header lookups over parsed pairs (case-insensitive; the last value of a name counts)


def header_text(pairs: Sequence[tuple[str, Any]] | dict[str, Any], names: Sequence[str]) -> str:
    """The last value of the first of ``names`` present (case-insensitive) as text. ``pairs``
    may be an index from :func:`last_values` when a message is looked up many times."""
    last = pairs if isinstance(pairs, dict) else last_values(pairs)
    for name in names:
        if name in last:
            value = last[name]
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return ""


def last_values(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """Lower-cased name -> the value of its LAST occurrence."""
    return {key.lower(): value for key, value in pairs}


def int_or_none(text: object) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def msg_id(pairs: Sequence[tuple[str, Any]] | dict[str, Any]) -> str:
    return header_text(pairs, ("nats-msg-id",))
