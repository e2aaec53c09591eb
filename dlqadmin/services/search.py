"""The free-text index: dead letters move from the backlog into ``DeadLetterSearch`` in bulk.

The harvest path only appends each new dead letter's id to ``SearchBacklog`` (one narrow row);
the trigram work happens here, a few thousand rows per statement, in the harvester's indexer
thread (:class:`BacklogIndexer`) and every few seconds from Celery beat (``search_index`` task).
Any number of indexers may run: each takes rows the others have not locked. A search reads the
backlog too (``dlqadmin.selectors``), so a stored message is found before it is indexed, only
by a slower scan of the (short) backlog. docs/architecture.md, "Storage".
"""

from __future__ import annotations

import logging
import threading

from django.db import DatabaseError, connection, transaction

from dlqadmin import search_sql
from dlqadmin.models import SearchBacklog

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
            indexed = cursor.rowcount
        total += indexed
        if indexed < limit:
            break
    return total


def search_backlog_size() -> int:
    """How many stored dead letters await the index (the dashboard says so when it is not 0)."""
    return SearchBacklog.objects.count()


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
