"""Dashboard tallies (``dlqadmin.models.tallies``) and, on PostgreSQL, the triggers that keep
them: the overview, the connections page and the error-group pages read per-status, per-hour
and per-day totals from them instead of aggregating a million dead letters (issue 8).

Statement-level AFTER triggers with transition tables: one aggregate per INSERT / UPDATE /
DELETE / COPY statement, appended as delta rows. No writer locks a counter row, so harvesters
and redrive workers never wait on each other or deadlock here. About one statement in 64 also
folds the deltas into the base rows (``dlqadmin_tally_compact``: one compactor at a time, under
a transaction-level advisory lock that the others skip). The backfill runs with the table
locked against writes, so no row is counted twice or missed. Other databases: tables only (the
selectors aggregate the dead letters there)."""

from django.db import migrations, models


LETTERS = "dlqadmin_deadletter"
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
    "dlqadmin_deadletter_tally_update": "AFTER UPDATE ON {t} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "dlqadmin_deadletter_tally_delete": "AFTER DELETE ON {t} REFERENCING OLD TABLE AS old_rows",
}


def _parts(columns):
    names = ", ".join(name for name, _ in columns)
    exprs = ", ".join(f"{expr} AS {name}" for name, expr in columns)
    keys = ", ".join(str(i + 1) for i in range(len(columns)))
    return names, exprs, keys


def _statements(kind: str) -> str:
    out = []
    for table, columns, where in TALLIES:
        names, exprs, keys = _parts(columns)
        insert = f"INSERT INTO {table} ({names}, n, delta)"
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
                f"WITH moved AS (DELETE FROM {table} WHERE delta RETURNING {names}, n) "
                f"INSERT INTO {table} AS base ({names}, n, delta) "
                f"SELECT {names}, sum(n), false FROM moved GROUP BY {keys} ORDER BY {keys} "
                f"ON CONFLICT ({names}) WHERE NOT delta DO UPDATE SET n = base.n + excluded.n;"
            )
        elif kind == "backfill":
            out.append(
                f"{insert} SELECT {exprs}, count(*), false FROM {LETTERS} WHERE {where} GROUP BY {keys};"
            )
    return "\n        ".join(out)


def functions() -> str:
    return f"""
CREATE OR REPLACE FUNCTION dlqadmin_tally_compact() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF pg_try_advisory_xact_lock(hashtext('dlqadmin_tally_compact')) THEN
        {_statements("compact")}
    END IF;
END $$;

CREATE OR REPLACE FUNCTION dlqadmin_deadletter_tally() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_statements("insert")}
    ELSIF TG_OP = 'DELETE' THEN
        {_statements("delete")}
    ELSE
        {_statements("update")}
    END IF;
    IF random() < 1.0 / 64 THEN
        PERFORM dlqadmin_tally_compact();
    END IF;
    RETURN NULL;
END $$;
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"LOCK TABLE {LETTERS} IN SHARE MODE")  # writes wait for the backfill
    for table, _, _ in TALLIES:
        schema_editor.execute(f"CREATE INDEX {table}_deltas ON {table} (id) WHERE delta")
    schema_editor.execute(functions())
    for name, when in TRIGGERS.items():
        schema_editor.execute(
            f"CREATE TRIGGER {name} {when.format(t=LETTERS)} "
            "FOR EACH STATEMENT EXECUTE FUNCTION dlqadmin_deadletter_tally()"
        )
    schema_editor.execute(_statements("backfill"))


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in TRIGGERS:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {name} ON {LETTERS}")
    schema_editor.execute("DROP FUNCTION IF EXISTS dlqadmin_deadletter_tally()")
    schema_editor.execute("DROP FUNCTION IF EXISTS dlqadmin_tally_compact()")


class Migration(migrations.Migration):
    dependencies = [
        ("dlqadmin", "0008_search_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="FailureTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("source_id", models.BigIntegerField()),
                ("hour", models.DateTimeField()),
                ("n", models.BigIntegerField()),
                ("delta", models.BooleanField(default=True)),
            ],
            options={
                "indexes": [models.Index(fields=["hour"], name="failuretally_hour")],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("delta", False)),
                        fields=("source_id", "hour"),
                        name="failuretally_base",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="GroupDayTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("error_group_id", models.BigIntegerField()),
                ("day", models.DateTimeField()),
                ("n", models.BigIntegerField()),
                ("delta", models.BooleanField(default=True)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("delta", False)),
                        fields=("error_group_id", "day"),
                        name="groupdaytally_base",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="StatusTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("source_id", models.BigIntegerField()),
                ("status", models.CharField(max_length=16)),
                ("n", models.BigIntegerField()),
                ("delta", models.BooleanField(default=True)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("delta", False)),
                        fields=("source_id", "status"),
                        name="statustally_base",
                    )
                ],
            },
        ),
        migrations.RunPython(create, drop, elidable=False),
    ]
