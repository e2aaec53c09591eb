"""The SQL of the dead-letter body's partitions, on PostgreSQL.

``dlqadmin_deadletter`` (the body: payload, headers, error text) is RANGE-partitioned on ``id``.
Ids come from one sequence in harvest order, so each partition holds a contiguous slice of
harvest time; retention drops a whole partition once every row of it may go
(``dlqadmin.services.maintenance.retention_purge``). Partitions span ``size`` ids on a grid
(``DLQADMIN_PARTITION_SIZE``) and are named ``dlqadmin_deadletter_p<lower bound>``. The bounds are
read back from the catalog, so the size may change at any time: the next partition starts where
the last one ends and stops at the next multiple of the new size.

Plain SQL over a DB-API cursor (no Django import): migrations may call it at any point in their
history. docs/architecture.md, "Storage".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LETTERS = "dlqadmin_deadletter"
STATES = "dlqadmin_deadletterstate"
KEYS = "dlqadmin_deadletterkey"
#: pg_advisory_xact_lock key of partition DDL (two harvester replicas, beat, retention)
LOCK = 0x646C71_70617274  # "dlq" "part"

#: ids that outran the partitions by fewer partitions than this get them on the grid (a COPY
#: of millions, a burst between two checks); a bigger jump, one partition covering the gap
GRID_FILL = 64

_BOUND = re.compile(r"FROM \((?P<lower>[^)]*)\) TO \((?P<upper>[^)]*)\)")


@dataclass(frozen=True)
class Partition:
    name: str
    lower: int | None  # None: MINVALUE
    upper: int


def _value(text: str) -> int | None:
    text = text.strip().strip("'")
    return None if text.upper() == "MINVALUE" else int(text)


def partitions(cursor) -> list[Partition]:
    """The body's partitions, lowest first (bounds from ``pg_class.relpartbound``)."""
    cursor.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        [LETTERS],
    )
    found = []
    for name, bound in cursor.fetchall():
        match = _BOUND.search(bound)
        found.append(Partition(name, _value(match["lower"]), _value(match["upper"])))
    return sorted(found, key=lambda p: p.upper)


def last_id(cursor) -> int:
    """The sequence's last value (ids handed out so far are at most this)."""
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [STATES])
    (sequence,) = cursor.fetchone()
    cursor.execute(f"SELECT last_value FROM {sequence}")  # noqa: S608 - a name from the catalog
    return cursor.fetchone()[0]


def _next_boundary(value: int, size: int) -> int:
    """The first multiple of ``size`` above ``value``."""
    return (value // size + 1) * size


def create(cursor, lower: int | None, upper: int) -> str:
    """One new partition: created apart, then attached. ``CREATE TABLE ... PARTITION OF`` would
    lock the dead-letter table against readers too (``ACCESS EXCLUSIVE``); ``ATTACH PARTITION``
    takes ``SHARE UPDATE EXCLUSIVE`` on it (reads and inserts go on). Both take ``SHARE ROW
    EXCLUSIVE`` on the state, revision and attempt tables for their foreign keys (writes there
    wait, briefly)."""
    name = f"{LETTERS}_p{lower or 0}"
    start = "MINVALUE" if lower is None else str(lower)
    cursor.execute(f"CREATE TABLE {name} (LIKE {LETTERS} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    cursor.execute(f"ALTER TABLE {LETTERS} ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({upper})")
    return name


def ensure(cursor, size: int, *, ahead: int = 0) -> tuple[list[str], int]:
    """Create partitions until one whole partition lies beyond the ids handed out so far (the
    spare), and beyond ``ahead`` more ids; returns the names created and the lower bound of the
    highest partition (an id at or above it leaves no spare). Run in a transaction: it takes the
    partition DDL lock first (waiting at most a few seconds for it, and for the table locks)."""
    cursor.execute("SET LOCAL lock_timeout = '5s'")
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK])
    existing = partitions(cursor)
    current = last_id(cursor) + ahead
    created = []
    if not existing or (current - existing[-1].upper) // size >= GRID_FILL:
        # none yet, or the ids jumped far past them: not thousands of empty partitions
        lower = existing[-1].upper if existing else None
        top = _next_boundary(current, size)
        created.append(create(cursor, lower, top))  # one partition covers the gap
    else:
        lower, top = existing[-1].lower, existing[-1].upper
    while lower is None or lower <= current:
        lower, top = top, _next_boundary(top, size)
        created.append(create(cursor, lower, top))
    return created, lower


def detach_and_drop(cursor, name: str) -> None:
    """Remove one partition and its rows (the caller has deleted what references them)."""
    cursor.execute(f"ALTER TABLE {LETTERS} DETACH PARTITION {name}")
    cursor.execute(f"DROP TABLE {name}")
