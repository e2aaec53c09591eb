"""The SQL that keeps the dashboard tallies (``dlqadmin.models.tallies``) on PostgreSQL.

Migration 0009 (``dlqadmin/migrations/0009_dashboard_tallies.py``) runs ``create_statements()``
and ``drop_statements()``; nothing else executes this SQL. Statement-level AFTER triggers with
transition tables on ``dlqadmin_deadletter``: one aggregate per INSERT / UPDATE / DELETE / COPY
statement, appended as delta rows, so no writer locks a counter row and harvesters and redrive
workers never wait on each other here. About one statement in 64 also folds the deltas into the
base rows (``dlqadmin_tally_compact()``: one compactor at a time, under a transaction-level
advisory lock that the others skip). The backfill runs with the table locked against writes, so
no row is counted twice or missed.

A database already migrated keeps the functions it was created with: changing the SQL here needs
a new migration that re-creates them (``CREATE OR REPLACE FUNCTION`` with ``functions()``), and
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
]
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


def statements(kind: str, table: str = LETTERS) -> str:
    """One statement per tally for ``kind``: insert, delete, update (the trigger's branches),
    compact (fold deltas into base rows) or backfill (base rows from the table as it is)."""
    out = []
    for tally, columns, where in TALLIES:
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


def functions() -> str:
    """``dlqadmin_tally_compact()`` and the trigger function ``dlqadmin_deadletter_tally()``."""
    return f"""
CREATE OR REPLACE FUNCTION dlqadmin_tally_compact() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF pg_try_advisory_xact_lock(hashtext('dlqadmin_tally_compact')) THEN
        {statements("compact")}
    END IF;
END $$;

CREATE OR REPLACE FUNCTION dlqadmin_deadletter_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {statements("insert")}
    ELSIF TG_OP = 'DELETE' THEN
        {statements("delete")}
    ELSE
        {statements("update")}
    END IF;
    IF random() < 1.0 / 64 THEN
        PERFORM dlqadmin_tally_compact();
    END IF;
    RETURN NULL;
END $$;
"""


def create_statements() -> list[str]:
    """Install the tallies' delta indexes, functions and triggers, then backfill, in order."""
    out = [f"LOCK TABLE {LETTERS} IN SHARE MODE"]  # writes wait for the backfill
    out += [f"CREATE INDEX {table}_deltas ON {table} (id) WHERE delta" for table, _, _ in TALLIES]
    out.append(functions())
    out += trigger_statements(LETTERS)
    out.append(statements("backfill"))
    return out


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
