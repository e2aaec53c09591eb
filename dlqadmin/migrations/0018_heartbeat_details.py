from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dlqadmin", "0017_metrics_counters_health_by"),
    ]

    operations = [
        migrations.AddField(
            model_name="heartbeat",
            name="details",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
