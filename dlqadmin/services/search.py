"""The free-text index: dead letters move from the backlog into ``DeadLetterSearch`` in bulk.

The harvest path only appends each new dead letter's id to ``SearchBacklog`` (one narrow row);
the trigram work happens here, a few thousand rows per statement, in the harvester's indexer
thread (:class:`BacklogIndexer`) and every few seconds from Celery beat (``search_index`` task).
Any number of indexers may run: each takes rows the others have not locked. A search reads the
index only (``dlqadmin.selectors``): a message is found a second or so after it is stored, and
the dashboard says how many are still waiting. docs/architecture.md, "Storage".
"""

from __future__ import annotations

import logging
import threading

from django.db import DatabaseError, connection, transaction
from django.db.models import BinaryField, Q, QuerySet
from django.db.models.functions import Substr

from dlqadmin import search_sql
from dlqadmin.decoding import compression
from dlqadmin.models import DeadLetter, SearchBacklog, Source
from dlqadmin.services.decoding import payload_decode

log = logging.getLogger(__name__)

#: rows per indexing statement (one transaction each)
INDEX_BATCH = 2000


def search_index_backlog(*, limit: int = INDEX_BATCH, max_batches: int = 50) -> int:
    """Index up to ``max_batches`` batches of the backlog, oldest first; returns how many rows
    were indexed. Stops early when a batch finds less than ``limit`` rows."""
    total = 0
    for _ in range(max_batches):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(search_sql.INDEX_BACKLOG, {"limit": limit})
            ids = [pk for (pk,) in cursor.fetchall()]
            _index_decoded(ids, cursor)
        total += len(ids)
        if len(ids) < limit:
            break
    return total


#: first bytes of a payload that decoding may turn into other text: a compression's magic
#: number (``decoding.compression.MAGIC``) or the Confluent wire format's magic byte 0
_DECODABLE_FIRST_BYTES = sorted({magic[:1] for magic in compression.MAGIC.values()} | {b"\x00"})


def _decodable(ids: list[int]) -> QuerySet[DeadLetter]:
    """Of the dead letters ``ids``, those decoding may read as other text: a compressed or
    wire-format body, a source with a payload format or a stored schema, a MessagePack or CBOR
    content type. The rest are searched by their bytes (escape-encoded in SQL)."""
    by_source = Source.objects.filter(
        Q(options__payload_format__in=["msgpack", "cbor"]) | Q(schemas__enabled=True)
    ).values("pk")
    binary_type = Q(properties__content_type__iregex=r"msgpack|cbor") | Q(headers__iregex=r"msgpack|cbor")
    return (
        DeadLetter.objects.filter(pk__in=ids)
        .alias(first=Substr("payload", 1, 1, output_field=BinaryField()))
        .filter(Q(first__in=_DECODABLE_FIRST_BYTES) | Q(source_id__in=by_source) | binary_type)
        .select_related("source__connection")
    )


def _index_decoded(ids: list[int], cursor) -> None:
    """Search the decoded text of those of ``ids`` whose payload decodes to other text (issue
    17: a gzip JSON order is found by its order id): the first ``PAYLOAD_BYTES`` of the decoded
    value's JSON, escape-encoded like the stored bytes. A payload that does not decode keeps
    its bytes' text."""
    if not ids:
        return
    found_ids, texts = [], []
    for letter in _decodable(ids):
        found = payload_decode(letter)
        text = found.text if found.has_value and found.changes_the_view else None
        if text is not None:
            found_ids.append(letter.pk)
            texts.append(search_sql.escape_encoded(text.encode("utf-8")[: search_sql.PAYLOAD_BYTES]))
    if found_ids:
        cursor.execute(search_sql.DECODED_TEXT, [found_ids, texts])


#: how far :func:`search_backlog_size` counts (a backlog is short while an indexer runs)
BACKLOG_COUNT_CAP = 10_000


def search_backlog_size() -> tuple[int, bool]:
    """How many stored dead letters await the index, and whether there are more than that
    (counted up to ``BACKLOG_COUNT_CAP``): the dashboard says so next to a search."""
    n = SearchBacklog.objects.all()[: BACKLOG_COUNT_CAP + 1].count()
    return min(n, BACKLOG_COUNT_CAP), n > BACKLOG_COUNT_CAP


class BacklogIndexer:
    """A daemon thread that keeps the backlog short: indexes what there is, then waits
    ``interval`` seconds. Database errors are logged and retried after the interval."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="search-indexer", daemon=True)

    def start(self) -> BacklogIndexer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    if search_index_backlog() >= INDEX_BATCH:
                        continue  # more waiting: no pause
                except DatabaseError as exc:
                    log.warning("search indexing failed, retrying in %.1fs: %s", self.interval, exc)
                    connection.close()
                self._stop.wait(self.interval)
        finally:
            connection.close()
