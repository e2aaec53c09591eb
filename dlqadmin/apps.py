from django.apps import AppConfig


class DlqadminConfig(AppConfig):
    name = "dlqadmin"
    verbose_name = "dlqadmin"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from dlqadmin import auth  # noqa: F401 - connects the failed-sign-in counter
