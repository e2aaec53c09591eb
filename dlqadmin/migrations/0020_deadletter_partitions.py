"""The dead-letter body partitioned by id ranges; the dedupe key in a narrow table of its own
(issue 15).

* ``dlqadmin_deadletterkey`` (new): dead letter id, source, position; UNIQUE (source, position).
  The store inserts the key first (``ON CONFLICT DO NOTHING``) and the body, state and search
  backlog of the new keys only. Filled here from the bodies.
* ``dlqadmin_deadletter`` becomes RANGE-partitioned on ``id`` (``dlqadmin/partition_sql.py``). In
  place, without copying the bodies: the existing table is renamed into the first partition,
  covering every id handed out so far up to the next multiple of ``DLQADMIN_PARTITION_SIZE``; a
  partitioned parent with the same columns, primary key, headers index and foreign key takes it
  in (``ATTACH PARTITION`` adopts the matching indexes instead of building them), and the next
  partition is created. A CHECK matching the bound, added first, lets the attach skip its own
  validation scan. The body's unique position goes (the key table has it); the foreign keys of
  revisions and redrive attempts are re-pointed at the parent under their own names.

docs/benchmarks.md gives the time for 1M rows. Reversible: going back copies the bodies into one
plain table again.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from dlqadmin import partition_sql

LETTERS, STATES, KEYS = partition_sql.LETTERS, partition_sql.STATES, partition_sql.KEYS
#: the tables whose foreign keys reference the body (re-pointed at the parent, names kept)
REFERENCING = ("dlqadmin_deadletterrevision", "dlqadmin_redriveattempt")
FIRST = f"{LETTERS}_p0"


def _referencing_keys(cursor) -> list[tuple[str, str, str]]:
    cursor.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE confrelid = %s::regclass AND contype = 'f' ORDER BY conname",
        [LETTERS],
    )
    return cursor.fetchall()


def forwards(apps, schema_editor):
    run = schema_editor.execute
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {STATES}, {LETTERS} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {LETTERS}")
        (highest,) = cursor.fetchone()
        upper = (max(highest, partition_sql.last_id(cursor)) // settings.DLQADMIN_PARTITION_SIZE + 1) * (
            settings.DLQADMIN_PARTITION_SIZE
        )
        foreign_keys = _referencing_keys(cursor)
    # the key table, filled from the bodies, its indexes built once
    run(
        f"CREATE TABLE {KEYS} (dead_letter_id bigint NOT NULL, source_key bigint NOT NULL, "
        "position varchar(600) NOT NULL)"
    )
    run(f"INSERT INTO {KEYS} (dead_letter_id, source_key, position) SELECT id, source_key, position FROM {LETTERS}")
    run(
        f"ALTER TABLE {KEYS} ADD CONSTRAINT {KEYS}_pkey PRIMARY KEY (dead_letter_id), "
        "ADD CONSTRAINT deadletterkey_unique_position UNIQUE (source_key, position), "
        f"ADD CONSTRAINT deadletterkey_state_fk FOREIGN KEY (dead_letter_id) REFERENCES {STATES} (id) "
        "DEFERRABLE INITIALLY DEFERRED"
    )
    # the body table becomes the first partition
    for table, name, _ in foreign_keys:
        run(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    run(f"ALTER TABLE {LETTERS} DROP CONSTRAINT deadletter_unique_position")
    run(f"ALTER TABLE {LETTERS} RENAME TO {FIRST}")
    run(f"ALTER INDEX {LETTERS}_pkey RENAME TO {FIRST}_pkey")
    run(f"ALTER INDEX deadletter_headers_gin RENAME TO {FIRST}_headers_gin")
    run(
        f"CREATE TABLE {LETTERS} (LIKE {FIRST} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (id)"
    )
    run(f"ALTER TABLE {FIRST} ADD CONSTRAINT {FIRST}_bound CHECK (id < {upper})")  # skips the attach's scan
    run(f"ALTER TABLE {LETTERS} ADD CONSTRAINT {LETTERS}_pkey PRIMARY KEY (id)")
    run(f"CREATE INDEX deadletter_headers_gin ON {LETTERS} USING gin (headers jsonb_path_ops)")
    run(
        f"ALTER TABLE {LETTERS} ADD CONSTRAINT deadletter_state_fk FOREIGN KEY (id) REFERENCES {STATES} (id) "
        "DEFERRABLE INITIALLY DEFERRED"
    )
    run(f"ALTER TABLE {LETTERS} ATTACH PARTITION {FIRST} FOR VALUES FROM (MINVALUE) TO ({upper})")
    run(f"ALTER TABLE {FIRST} DROP CONSTRAINT {FIRST}_bound")
    for table, name, definition in foreign_keys:
        run(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
    with schema_editor.connection.cursor() as cursor:
        partition_sql.ensure(cursor, settings.DLQADMIN_PARTITION_SIZE)


def backwards(apps, schema_editor):
    """One plain body table again (for going back a release; the bodies are copied)."""
    run = schema_editor.execute
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {STATES}, {LETTERS} IN ACCESS EXCLUSIVE MODE")
        foreign_keys = _referencing_keys(cursor)
    for table, name, _ in foreign_keys:
        run(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    run(f"CREATE TABLE {LETTERS}_plain (LIKE {LETTERS} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    run(f"INSERT INTO {LETTERS}_plain SELECT * FROM {LETTERS}")
    run(f"DROP TABLE {LETTERS}, {KEYS}")
    run(f"ALTER TABLE {LETTERS}_plain RENAME TO {LETTERS}")
    run(
        f"ALTER TABLE {LETTERS} ADD CONSTRAINT {LETTERS}_pkey PRIMARY KEY (id), "
        "ADD CONSTRAINT deadletter_unique_position UNIQUE (source_key, position), "
        f"ADD CONSTRAINT deadletter_state_fk FOREIGN KEY (id) REFERENCES {STATES} (id) DEFERRABLE INITIALLY DEFERRED"
    )
    run(f"CREATE INDEX deadletter_headers_gin ON {LETTERS} USING gin (headers jsonb_path_ops)")
    for table, name, definition in foreign_keys:
        run(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")


class Migration(migrations.Migration):
    dependencies = [
        ("dlqadmin", "0019_connection_schema_registry"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards, elidable=False)],
            state_operations=[
                migrations.RemoveConstraint(
                    model_name="deadletter",
                    name="deadletter_unique_position",
                ),
                migrations.CreateModel(
                    name="DeadLetterKey",
                    fields=[
                        (
                            "dead_letter",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                primary_key=True,
                                related_name="+",
                                serialize=False,
                                to="dlqadmin.deadletterstate",
                            ),
                        ),
                        ("source_key", models.BigIntegerField()),
                        ("position", models.CharField(max_length=600)),
                    ],
                    options={
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("source_key", "position"), name="deadletterkey_unique_position"
                            )
                        ],
                    },
                ),
            ],
        ),
        migrations.RunSQL(f"ANALYZE {KEYS}", migrations.RunSQL.noop, elidable=True),
    ]
