"""Indexes for the dashboard and API filters at scale (PostgreSQL only; a no-op elsewhere).

Measured with `make bench` on 1 000 000 dead letters (docs/benchmarks.md):

* ``header`` filter (``headers @> [[name, node]]``): GIN ``jsonb_path_ops`` on ``headers``;
* free text ``q`` (``UPPER(col) LIKE UPPER('%q%')`` from ``icontains``): trigram GIN on
  ``upper(error_message)`` and ``upper(error_class)``; in the payload: trigram GIN on
  ``encode(payload, 'escape')``, the text the ``bytes_contains`` lookup matches first;
* the error-group page's status breakdown: ``(error_group_id, status) INCLUDE (id)`` (index-only).

Built CONCURRENTLY (writes continue; the migration is not atomic), then ANALYZE, so the planner
has statistics on the indexed expressions: without them it guesses a trigram LIKE matches a
handful of rows and sorts a fifth of the table for a common word.
"""

from django.db import migrations

TABLE = "dlqadmin_deadletter"
INDEXES = {
    "deadletter_headers_gin": "USING gin (headers jsonb_path_ops)",
    "deadletter_error_message_trgm": "USING gin (upper(error_message) gin_trgm_ops)",
    "deadletter_error_class_trgm": "USING gin (upper(error_class::text) gin_trgm_ops)",
    "deadletter_payload_trgm": "USING gin (encode(payload, 'escape') gin_trgm_ops)",
    "deadletter_group_status": "(error_group_id, status) INCLUDE (id)",
}


def create(apps, schema_editor):
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, definition in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {TABLE} {definition}")
    schema_editor.execute(f"ANALYZE {TABLE}")


def drop(apps, schema_editor):
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("dlqadmin", "0007_masking_source_access"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
