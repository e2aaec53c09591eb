"""Create the roles (Django groups) viewer, operator and admin, with their admin-site permissions.

What each role may do in the product is decided by dlqadmin/permissions.py; the model
permissions here only open the matching pages of Django's admin site.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

READ_MODELS = ["connection", "source", "deadletter", "deadletterrevision", "errorgroup", "redrivejob",
               "redriveattempt", "auditevent"]
ADMIN_WRITE = {"connection": "add change delete", "source": "add change delete", "apitoken": "add change delete view"}


def create_roles(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    def perms(codenames):
        return list(Permission.objects.filter(codename__in=codenames))

    read = [f"view_{m}" for m in READ_MODELS]
    viewer, _ = Group.objects.get_or_create(name="viewer")
    viewer.permissions.set(perms(read))
    operator, _ = Group.objects.get_or_create(name="operator")
    operator.permissions.set(perms(read + ["change_errorgroup"]))
    admin, _ = Group.objects.get_or_create(name="admin")
    admin_codes = read + ["change_errorgroup", "view_user", "add_user", "change_user", "view_group"]
    for model, verbs in ADMIN_WRITE.items():
        admin_codes += [f"{verb}_{model}" for verb in verbs.split()]
    admin.permissions.set(perms(admin_codes))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["viewer", "operator", "admin"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("dlqadmin", "0002_tokens_revisions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
