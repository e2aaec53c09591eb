"""Dashboard tallies (``dlqadmin.models.tallies``) and the triggers that keep them: the overview,
the connections page and the error-group pages read per-status, per-hour and per-day totals from
them instead of aggregating a million dead letters (issue 8).

Statement-level AFTER triggers with transition tables: one aggregate per INSERT / UPDATE /
DELETE / COPY statement, appended as delta rows; the SQL and how it works live in
``dlqadmin/tally_sql.py``."""

from django.db import migrations, models

from dlqadmin.tally_sql import create_statements, drop_statements


def create(apps, schema_editor):
    for statement in create_statements():
        schema_editor.execute(statement)


def drop(apps, schema_editor):
    for statement in drop_statements():
        schema_editor.execute(statement)


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
