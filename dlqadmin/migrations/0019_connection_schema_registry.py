from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dlqadmin", "0018_heartbeat_details"),
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
        migrations.CreateModel(
            name="StoredSchema",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True)),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("avro", "Avro (.avsc)"),
                            ("protobuf", "Protobuf (descriptor set: protoc --include_imports --descriptor_set_out)"),
                            ("json_schema", "JSON Schema"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "definition",
                    models.TextField(
                        help_text="The .avsc or JSON Schema text; for Protobuf the descriptor set, base64-encoded."
                    ),
                ),
                (
                    "message_type",
                    models.CharField(
                        blank=True,
                        help_text="Protobuf: the full name of the message, e.g. acme.Order.",
                        max_length=300,
                    ),
                ),
                (
                    "header",
                    models.CharField(
                        blank=True,
                        help_text="Only messages whose header (or content type: content-type) has the value "
                        "below. Empty: every message of the sources.",
                        max_length=200,
                    ),
                ),
                ("header_value", models.CharField(blank=True, max_length=500)),
                ("enabled", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "sources",
                    models.ManyToManyField(
                        blank=True, help_text="Decode these.", related_name="schemas", to="dlqadmin.source"
                    ),
                ),
            ],
            options={"ordering": ["name"]},
        ),
    ]
