from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dlqadmin", "0011_deadletter_drop_redundant_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="deadletter",
            name="read_notes",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text='What the harvester could not read of this message ("could not read <field>: <why>").',
            ),
        ),
    ]
