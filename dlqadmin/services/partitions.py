"""Dead-letter partitions created ahead of the ids (``dlqadmin/partition_sql.py``).

The body table is partitioned by id ranges of ``DLQADMIN_PARTITION_SIZE``; an insert must always
find its partition, so one whole spare partition is kept beyond the ids handed out. Who keeps it:
migration 0020, the harvester after a store that reached the last partition
(:func:`partitions_after_store`), the Celery beat task every five minutes, the ORM save and the
bench's COPY. A store that finds no partition all the same creates them and stores again
(``services/harvest/store.py``).
"""

from __future__ import annotations

from dlqadmin.models.dead_letters import partitions_ahead, partitions_ensure_now


def partitions_ensure(*, ahead: int = 0) -> list[str]:
    """Create partitions until a spare one lies beyond the ids (and ``ahead`` more); returns the
    names created."""
    return partitions_ensure_now(ahead=ahead)


def partitions_after_store(*, ids: list[int]) -> None:
    """After a store: nothing unless its ids reached the highest partition (compared with the
    bound this process remembers), then the DDL of :func:`partitions_ensure`."""
    if ids:
        partitions_ahead(last=max(ids))
