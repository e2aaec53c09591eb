"""The SQL that keeps the dashboard tallies (``dlqadmin.models.tallies``) on PostgreSQL.

Migration 0009 (``dlqadmin/migrations/0009_dashboard_tallies.py``) runs ``create_statements()``
and ``drop_statements()`` (three tallies), migration 0021 ``added_statements(TALLIES_0021)`` (the
fourth, ``GroupStatusTally``); nothing else executes this SQL. Statement-level AFTER triggers with
transition tables on ``dlqadmin_deadletter``: one aggregate per INSERT / UPDATE / DELETE / COPY
statement, appended as delta rows, so no writer locks a counter row and harvesters and redrive
workers never wait on each other here. About one statement in 64 also folds the deltas into the
base rows (``dlqadmin_tally_compact()``: one compactor at a time, under a transaction-level
advisory lock that the others skip). The backfill runs with the table locked against writes, so
no row is counted twice or missed.

A database already migrated keeps the functions it was created with: changing the SQL here needs
a new migration that re-creates them (``CREATE OR REPLACE FUNCTION`` with ``functions()`` of its
own frozen list, like ``TALLIES_0021``; its reverse re-creates the previous list's), and
``tests/views/test_tallies.py`` pins a digest of this SQL so such a change cannot go unnoticed.
Plain strings only (no Django import): migrations may import it at any point in their history.
"""

LETTERS = "dlqadmin_deadletter"  # where migration 0009 installed the triggers
#: where they are since migration 0016 (the lifecycle columns moved to the narrow state table)
STATES = "dlqadmin_deadletterstate"
#: (table, [(column, expression over a dead-letter row)], row filter)
TALLIES = [
    ("dlqadmin_statustally", [("source_id", "source_id"), ("status", "status")], "true"),
    (
        "dlqadmin_failuretally",
        [
            ("source_id", "source_id"),
            ("hour", "date_trunc('hour', failed_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"),
        ],
        "true",
    ),
    (
        "dlqadmin_groupdaytally",
        [
            ("error_group_id", "error_group_id"),
            ("day", "date_trunc('day', failed_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"),
        ],
        "error_group_id IS NOT NULL",
    ),
    # since migration 0021: the group page's per-status counts
    (
        "dlqadmin_groupstatustally",
        [("error_group_id", "error_group_id"), ("status", "status")],
        "error_group_id IS NOT NULL",
    ),
]
#: the tallies each migration's functions keep: a migration installs its own list, never a later
#: one (whose tables it has not created yet)
TALLIES_0009 = TALLIES[:3]
TALLIES_0021 = TALLIES[:4]
TRIGGERS = {
    "dlqadmin_deadletter_tally_insert": "AFTER INSERT ON {t} REFERENCING NEW TABLE AS new_rows",
    "dlqadmin_deadletter_tally_update": (
        "AFTER UPDATE ON {t} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    ),
    "dlqadmin_deadletter_tally_delete": "AFTER DELETE ON {t} REFERENCING OLD TABLE AS old_rows",
}


def _parts(columns):
    names = ", ".join(name for name, _ in columns)
    exprs = ", ".join(f"{expr} AS {name}" for name, expr in columns)
    keys = ", ".join(str(i + 1) for i in range(len(columns)))
    return names, exprs, keys


def statements(kind: str, table: str = LETTERS, tallies: list | None = None) -> str:
    """One statement per tally of ``tallies`` (default: all) for ``kind``: insert, delete, update
    (the trigger's branches), compact (fold deltas into base rows) or backfill (base rows from
    the table as it is)."""
    out = []
    for tally, columns, where in TALLIES if tallies is None else tallies:
        names, exprs, keys = _parts(columns)
        insert = f"INSERT INTO {tally} ({names}, n, delta)"
        if kind == "insert":
            out.append(
                f"{insert} SELECT {exprs}, count(*), true FROM new_rows WHERE {where} GROUP BY {keys};"
            )
        elif kind == "delete":
            out.append(
                f"{insert} SELECT {exprs}, -count(*), true FROM old_rows WHERE {where} GROUP BY {keys};"
            )
        elif kind == "update":
            out.append(
                f"{insert} SELECT {names}, sum(n), true FROM ("
                f"SELECT {exprs}, 1 AS n FROM new_rows WHERE {where} "
                f"UNION ALL SELECT {exprs}, -1 AS n FROM old_rows WHERE {where}"
                f") AS change GROUP BY {keys} HAVING sum(n) <> 0;"
            )
        elif kind == "compact":
            out.append(
                f"WITH moved AS (DELETE FROM {tally} WHERE delta RETURNING {names}, n) "
                f"INSERT INTO {tally} AS base ({names}, n, delta) "
                f"SELECT {names}, sum(n), false FROM moved GROUP BY {keys} ORDER BY {keys} "
                f"ON CONFLICT ({names}) WHERE NOT delta DO UPDATE SET n = base.n + excluded.n;"
            )
        elif kind == "backfill":
            out.append(
                f"{insert} SELECT {exprs}, count(*), false FROM {table} WHERE {where} GROUP BY {keys};"
            )
    return "\n        ".join(out)


def functions(tallies: list | None = None) -> str:
    """``dlqadmin_tally_compact()`` and the trigger function ``dlqadmin_deadletter_tally()``,
    keeping ``tallies`` (default: all)."""
    return f"""
CREATE OR REPLACE FUNCTION dlqadmin_tally_compact() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF pg_try_advisory_xact_lock(hashtext('dlqadmin_tally_compact')) THEN
        {statements("compact", tallies=tallies)}
    END IF;
END $$;

CREATE OR REPLACE FUNCTION dlqadmin_deadletter_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {statements("insert", tallies=tallies)}
    ELSIF TG_OP = 'DELETE' THEN
        {statements("delete", tallies=tallies)}
    ELSE
        {statements("update", tallies=tallies)}
    END IF;
    IF random() < 1.0 / 64 THEN
        PERFORM dlqadmin_tally_compact();
    END IF;
    RETURN NULL;
END $$;
"""


def create_statements(tallies: list = TALLIES_0009) -> list[str]:
    """What migration 0009 ran: install the tallies' delta indexes, functions and triggers, then
    backfill, in order (``tallies``: its three, whatever was added since)."""
    out = [f"LOCK TABLE {LETTERS} IN SHARE MODE"]  # writes wait for the backfill
    out += [delta_index(table) for table, _, _ in tallies]
    out.append(functions(tallies))
    out += trigger_statements(LETTERS)
    out.append(statements("backfill", tallies=tallies))
    return out


def delta_index(table: str) -> str:
    return f"CREATE INDEX {table}_deltas ON {table} (id) WHERE delta"


def added_statements(tallies: list) -> list[str]:
    """Add the last of ``tallies`` (its table exists) to a database whose triggers are on
    ``STATES``: its delta index, the functions re-created for ``tallies``, its base rows counted
    from ``STATES`` with writes waiting (so no row is counted twice or missed)."""
    added = tallies[-1:]
    return [
        f"LOCK TABLE {STATES} IN SHARE MODE",
        delta_index(added[0][0]),
        functions(tallies),
        statements("backfill", STATES, tallies=added),
    ]


def trigger_statements(table: str) -> list[str]:
    """The three statement-level triggers on ``table`` (its rows are dead letters' states)."""
    return [
        f"CREATE TRIGGER {name} {when.format(t=table)} "
        "FOR EACH STATEMENT EXECUTE FUNCTION dlqadmin_deadletter_tally()"
        for name, when in TRIGGERS.items()
    ]


def drop_trigger_statements(table: str) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {name} ON {table}" for name in TRIGGERS]


def drop_statements() -> list[str]:
    """Remove the triggers and functions (the tally tables go with the migration's models)."""
    out = drop_trigger_statements(LETTERS)
    out.append("DROP FUNCTION IF EXISTS dlqadmin_deadletter_tally()")
    out.append("DROP FUNCTION IF EXISTS dlqadmin_tally_compact()")
    return out
