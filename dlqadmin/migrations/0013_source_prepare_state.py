from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dlqadmin", "0012_deadletter_read_notes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="source",
            name="mode",
            field=models.CharField(
                choices=[
                    ("queue", "RabbitMQ dead-letter queue"),
                    ("topic", "Kafka dead-letter topic"),
                    ("advisory", "NATS JetStream max-deliveries / terminated advisories"),
                    ("dlq_stream", "NATS JetStream application DLQ stream"),
                    ("subject", "Core NATS DLQ subject (live only)"),
                ],
                help_text="NATS advisories: saving the source (enabled) creates a capture stream "
                "DLQADMIN_ADV_<stream> for the stream's max-deliveries and terminated advisories, or "
                "reads from a stream of yours that already captures them. NATS sends advisories only "
                "to listeners: failures from before the capture existed are lost and cannot be harvested.",
                max_length=16,
            ),
        ),
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
