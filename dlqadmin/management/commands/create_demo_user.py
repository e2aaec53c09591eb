"""``manage.py create_demo_user [--username demo]``: the demo operator, for ``make demo`` only.

Idempotent: creates the user or resets its password, and makes it staff + superuser (the
dashboard is the Django admin for now). The password comes from the environment variable
``DEMO_PASSWORD``, so it never shows up in a process listing.
"""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction


class Command(BaseCommand):
    help = "Create (or reset) the demo operator from $DEMO_PASSWORD. For `make demo` only."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--email", default="demo@example.com")

    @transaction.atomic
    def handle(self, *args, username, email, **options):
        password = os.environ.get("DEMO_PASSWORD", "")
        if not password:
            raise CommandError("set DEMO_PASSWORD to the demo operator's password")
        user, created = get_user_model().objects.get_or_create(username=username, defaults={"email": email})
        user.is_active = user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(f"demo operator {username!r} {'created' if created else 'updated'}")
