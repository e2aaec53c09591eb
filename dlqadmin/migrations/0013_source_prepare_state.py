from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dlqadmin", "0012_deadletter_read_notes"),
    ]

    operations = [
        migrations.AddField(
            model_name="source",
            name="prepared_at",
            field=models.DateTimeField(
                blank=True,
                editable=False,
                help_text="When the broker was last set up for this source.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="source",
            name="prepare_error",
            field=models.TextField(
                blank=True,
                editable=False,
                help_text="Why the broker could not be set up for this source.",
            ),
        ),
        migrations.AddField(
            model_name="source",
            name="prepare_note",
            field=models.TextField(
                blank=True,
                editable=False,
                help_text="Where the broker captures this source's failures.",
            ),
        ),
        migrations.AddField(
            model_name="source",
            name="prepared_options",
            field=models.JSONField(
                blank=True,
                default=dict,
                editable=False,
                help_text="Harvest options prepare() found (e.g. the capture stream to read); "
                "the source's own options override them.",
            ),
        ),
    ]
