from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dlqadmin", "0015_redrive_attempt_lease"),
    ]

    operations = [
        migrations.AddField(
            model_name="heartbeat",
            name="details",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
