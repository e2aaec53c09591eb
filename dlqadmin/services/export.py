"""Export and import of dead letters.

JSON-lines is the lossless format: one object per message with the payload and key in base64
and the headers in the stored typed encoding, so ``import`` gives back byte-identical rows.
CSV is a flat summary for spreadsheets (no payload bytes; every text cell defused against
formula injection). Both stream: rows are read with
``iterator()`` and written one at a time, so memory stays flat in the export size.

Both take the ``user`` the export is for: a masked user (dlqadmin.services.masking) gets masked
payload, headers and error text, and each such record says ``"masked": true`` (it cannot be
imported back). ``user=None`` is the system (the CLI): lossless. A compressed or binary-encoded
payload (gzip, MessagePack ...: ``dlqadmin.decoding``) also gets ``"decoded"``: the chain and the
decoded value, masked for a masked user (whose ``payload_b64`` is then hidden when it would
give masked values away).
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db.models import QuerySet

from brokers.base import HarvestedMessage, Origin
from dlqadmin.models import DeadLetter, Source
from dlqadmin.services.harvest.store import dead_letters_store
from dlqadmin.services.masking import MaskedMessage, Masker
from dlqadmin.validators import parse_instant

FORMAT_VERSION = 1
CSV_COLUMNS = [
    "id",
    "source",
    "status",
    "failed_at",
    "reason",
    "error_class",
    "error_message",
    "original_destination",
    "origin_partition",
    "origin_offset",
    "origin_seq",
    "payload_size",
    "redrive_count",
    "position",
]


def _b64(value) -> str | None:
    return None if value is None else base64.b64encode(bytes(value)).decode("ascii")


def record(row: DeadLetter, seen: MaskedMessage | None = None) -> dict:
    """The JSON form of one dead letter: lossless, or as ``seen`` by a masked user."""
    if seen is None:
        seen = MaskedMessage.of(row, None)
    return {
        "format": FORMAT_VERSION,
        "id": row.pk,
        "source": row.source.name,
        "position": row.position,
        "masked": seen.masked,
        "payload_b64": _b64(seen.payload),
        "payload_available": row.payload_available,
        "key_b64": _b64(seen.key),
        "headers": seen.headers,
        "properties": seen.properties,
        "origin": {
            "exchange": row.origin_exchange,
            "routing_key": row.origin_routing_key,
            "queue": row.origin_queue,
            "topic": row.origin_topic,
            "partition": row.origin_partition,
            "offset": row.origin_offset,
            "stream": row.origin_stream,
            "subject": row.origin_subject,
            "seq": row.origin_seq,
            "extra": row.origin_extra,
        },
        "reason": row.reason,
        "error_class": row.error_class,
        "error_message": seen.error_message,
        "stacktrace": seen.stacktrace,
        "read_notes": seen.read_notes,
        "failed_at": row.failed_at.isoformat(),
        "harvested_at": row.harvested_at.isoformat(),
        "status": row.status,
        "retry_count": row.retry_count,
        "redrive_count": row.redrive_count,
    }


def _rows(qs: QuerySet[DeadLetter]) -> Iterator[DeadLetter]:
    return qs.select_related("source__connection").iterator(chunk_size=500)  # decoding reads both


def iter_jsonl(qs: QuerySet[DeadLetter], *, user) -> Iterator[str]:
    """One JSON line per message (each ends with a newline), as ``user`` may see it."""
    masker = Masker(user)
    for row in _rows(qs):
        line = record(row, masker.message(row))
        decoded = masker.decoded(row)
        if decoded.changes_the_view:
            # compressed or binary-encoded: what it decodes to, masked like the payload
            # (informational: import reads payload_b64)
            line["decoded"] = {"chain": decoded.chain, "value": decoded.value, "error": decoded.error}
        yield json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"


def iter_csv(qs: QuerySet[DeadLetter], *, user) -> Iterator[str]:
    """A header line, then one summary line per message (error text as ``user`` may see it)."""
    masker = Masker(user)
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        value = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate(0)
        return value

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for row in _rows(qs):
        cells = [
            row.pk,
            row.source.name,
            row.status,
            row.failed_at.isoformat(),
            row.reason,
            row.error_class,
            masker.text(row.source_id, row.error_message)[:1000],
            row.original_destination,
            row.origin_partition,
            row.origin_offset,
            row.origin_seq,
            row.payload_size,
            row.redrive_count,
            row.position,
        ]
        writer.writerow([_csv_safe(cell) if isinstance(cell, str) else cell for cell in cells])
        yield flush()


#: a spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_safe(text: str) -> str:
    """Defuse formula injection in a text cell: a leading ' makes the spreadsheet show it as text.
    Every text column goes through here (source and queue names, error class and text, position
    come from brokers and producers); numbers are written as numbers."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


@dataclass
class ImportResult:
    read: int = 0
    inserted: int = 0
    duplicates: int = 0


class ImportError_(ValueError):  # noqa: N801 - avoid shadowing the builtin ImportError
    """A line that is not a dlqadmin export record (with its line number)."""


def _message(data: dict) -> HarvestedMessage:
    origin = data.get("origin") or {}
    return HarvestedMessage(
        position=data["position"],
        payload=base64.b64decode(data.get("payload_b64") or ""),
        payload_available=bool(data.get("payload_available", True)),
        key=base64.b64decode(data["key_b64"]) if data.get("key_b64") is not None else None,
        headers=data.get("headers") or [],
        properties=data.get("properties") or {},
        origin=Origin(
            exchange=origin.get("exchange") or "",
            routing_key=origin.get("routing_key") or "",
            queue=origin.get("queue") or "",
            topic=origin.get("topic") or "",
            partition=origin.get("partition"),
            offset=origin.get("offset"),
            stream=origin.get("stream") or "",
            subject=origin.get("subject") or "",
            seq=origin.get("seq"),
            extra=origin.get("extra") or {},
        ),
        reason=data.get("reason") or "",
        error_class=data.get("error_class") or "",
        error_message=data.get("error_message") or "",
        stacktrace=data.get("stacktrace") or "",
        # in UTC: PostgreSQL refuses offsets beyond +-15:59 that fromisoformat accepts
        failed_at=parse_instant(data["failed_at"]) if data.get("failed_at") else None,
        retry_count=int(data.get("retry_count") or 0),
        read_notes=[str(note) for note in data.get("read_notes") or []],
    )


def import_jsonl(
    lines: Iterable[str], *, source: Source | None = None, batch_size: int = 500
) -> ImportResult:
    """Store exported records (into ``source``, or each record's own source by name).

    Idempotent like a harvest: a record whose (source, position) is already stored is skipped.
    Raises ImportError_ naming the first bad line (or masked record: its values are not the
    original bytes); lines before it stay imported.
    """
    result = ImportResult()
    batches: dict[int, list[HarvestedMessage]] = {}
    sources: dict[int, Source] = {}

    def flush(source_id: int) -> None:
        stored = dead_letters_store(source=sources[source_id], batch=batches.pop(source_id))
        result.inserted += stored.inserted
        result.duplicates += stored.duplicates

    by_name: dict[str, Source] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if isinstance(data, dict) and data.get("masked"):
                raise ImportError_(
                    f"line {number}: a masked export cannot be imported "
                    "(masked values replaced the originals)"
                )
            message = _message(data)
            target = source
            if target is None:
                name = data["source"]
                target = by_name.get(name) or Source.objects.get(name=name)
                by_name[name] = target
        except ImportError_:
            raise
        except Source.DoesNotExist:
            raise ImportError_(
                f"line {number}: unknown source {data.get('source')!r}; pass --source"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ImportError_(f"line {number}: not a dlqadmin export record ({exc})") from None
        result.read += 1
        sources[target.pk] = target
        batches.setdefault(target.pk, []).append(message)
        if len(batches[target.pk]) >= batch_size:
            flush(target.pk)
    for source_id in list(batches):
        flush(source_id)
    return result
