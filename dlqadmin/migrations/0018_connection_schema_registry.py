from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dlqadmin", "0015_redrive_attempt_lease"),
    ]

    operations = [
        migrations.AddField(
            model_name="connection",
            name="schema_registry_url",
            field=models.CharField(
                blank=True,
                help_text="Schema Registry for Confluent wire-format payloads (Avro, Protobuf, JSON Schema), "
                "e.g. http://registry:8081. Empty: none.",
                max_length=1000,
            ),
        ),
        migrations.AddField(
            model_name="connection",
            name="schema_registry_username",
            field=models.CharField(
                blank=True, help_text="Basic-auth user (empty: the secret is a bearer token).", max_length=200
            ),
        ),
        migrations.AddField(
            model_name="connection",
            name="schema_registry_secret_encrypted",
            field=models.TextField(blank=True, editable=False),
        ),
    ]
