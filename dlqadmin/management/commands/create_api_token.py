"""``manage.py create_api_token <username> [--name NAME]``: a token for automation.

Prints the key once, on its own line, so a script can capture it (``KEY=$(... | tail -1)``);
only a hash is stored, so it cannot be shown again. Revoke it in the API (``tokens/``).
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from dlqadmin.services.tokens import token_create


class Command(BaseCommand):
    help = "Create an API token for a user and print its key (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="What the token is for (default: cli).")

    def handle(self, *args, username, name, **options):
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(f"no user {username!r}") from None
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive")
        token, raw_key = token_create(user=user, name=name)
        self.stderr.write(
            f"Token {token.name!r} ({token.prefix}...) created for {username}. "
            "Store the key now: it is not shown again."
        )
        self.stdout.write(raw_key)
