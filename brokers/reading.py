"""Reading a dead letter's fields without ever failing on one: a value, or a note saying why not.

A dead-letter queue holds exactly the messages producers got wrong: timestamps in the wrong unit,
counters out of any sane range, headers of unexpected types. Each adapter converts a message
field by field with these helpers; a field that cannot be read falls back to a neutral value and
``"could not read <field>: <why>"`` is appended to :attr:`HarvestedMessage.read_notes`. If the
conversion of a message still fails, :func:`salvage_note` describes it and the adapter stores the
raw message with that note instead (``salvaged`` in the Kafka and RabbitMQ adapters; NATS
stores the advisory as captured).

Pure functions; no client library here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

#: 9999-12-31T23:59:59.999Z, the last instant a Python datetime (and this tool) can show.
MAX_EPOCH_MS = 253_402_300_799_999
#: longest note kept (the raw message itself is stored in full).
MAX_NOTE = 500
MAX_SHOWN = 80


def note(field: str, why: str) -> str:
    return f"could not read {field}: {why}"[:MAX_NOTE]


def shown(value: Any) -> str:
    """A value as it appears in a note: short, one line, never the whole payload."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "backslashreplace")
    text = repr(value) if isinstance(value, str) else str(value)
    text = text.replace("\x00", "\\x00").replace("\n", "\\n")
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _from_ms(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _unit_hint(value: int) -> str:
    """What a too-large epoch value would mean in a finer unit (a common producer bug)."""
    for unit, per_ms in (("microseconds", 1_000), ("nanoseconds", 1_000_000)):
        if 0 <= value // per_ms <= MAX_EPOCH_MS and value // per_ms >= 10**11:  # after 1973
            return f"; read as {unit} it would be {_from_ms(value // per_ms).isoformat()}"
    return ""


def epoch_ms(value: Any, notes: list[str], *, field: str = "failed_at") -> datetime | None:
    """An epoch-milliseconds timestamp as an aware UTC datetime; None (the harvest time is
    stored) with a note when it is negative, absurd or not a number. The unit is never guessed:
    a value that reads as a date in microseconds is still noted, with that reading as a hint."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= MAX_EPOCH_MS:
            return _from_ms(value)
        if value < 0:
            why = f"{value} is a negative millisecond timestamp"
        else:
            why = f"{value} is not a millisecond timestamp (after the year 9999){_unit_hint(value)}"
    else:
        why = f"{shown(value)} is not a millisecond timestamp"
    notes.append(note(field, why + "; the harvest time is stored instead"))
    return None


def bounded_int(
    value: Any, notes: list[str], *, field: str, low: int, high: int, fallback: int | None
) -> int | None:
    """``value`` if it is an int within [low, high]; else ``fallback`` with a note."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
        return value
    notes.append(note(field, f"{shown(value)} is outside {low}..{high}; {fallback} is stored instead"))
    return fallback


def salvage_note(exc: BaseException) -> str:
    """The note for a message whose conversion failed as a whole (stored raw instead)."""
    return note("message", f"{type(exc).__name__}: {exc}; stored with its raw bytes only")
