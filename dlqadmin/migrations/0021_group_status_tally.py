"""The group page's per-status counts from a tally (``GroupStatusTally``), no longer counted over
the group's rows of the state table (an index-only scan that grows with the group: 40 ms for
400k rows).

The table and its delta index are created, the tally functions re-created with the fourth
tally (``CREATE OR REPLACE``; the triggers on the state table stay), and its base rows counted
from the state table with writes waiting (``tally_sql.added_statements``, with ``TALLIES_0021``).

Reversible: going back re-creates the functions of migration 0009 (the three tallies, without
this one) before the table is dropped. Leaving the new functions in place would make every
write to the state table fail on the missing table.
"""

from django.db import migrations, models

from dlqadmin import tally_sql


def create(apps, schema_editor):
    for statement in tally_sql.added_statements(tally_sql.TALLIES_0021):
        schema_editor.execute(statement)


def drop(apps, schema_editor):
    schema_editor.execute(tally_sql.functions(tally_sql.TALLIES_0009))  # the table goes next


class Migration(migrations.Migration):
    dependencies = [
        ("dlqadmin", "0020_deadletter_partitions"),
    ]

    operations = [
        migrations.CreateModel(
            name="GroupStatusTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("n", models.BigIntegerField()),
                ("delta", models.BooleanField(default=True)),
                ("error_group_id", models.BigIntegerField()),
                ("status", models.CharField(max_length=16)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("delta", False)),
                        fields=("error_group_id", "status"),
                        name="groupstatustally_base",
                    )
                ],
            },
        ),
        migrations.RunPython(create, drop, elidable=False),
    ]
