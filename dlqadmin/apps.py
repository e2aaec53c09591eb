from django.apps import AppConfig


class DlqadminConfig(AppConfig):
    name = "dlqadmin"
    verbose_name = "dlqadmin"
    default_auto_field = "django.db.models.BigAutoField"
