"""``manage.py rotate_encryption_key``: re-encrypt every stored broker credential under the newest
key of DLQADMIN_ENCRYPTION_KEY (the first of the comma-separated list).

One transaction; credentials already under the newest key are left alone, so running it again
changes nothing. Afterwards the older keys may be removed from DLQADMIN_ENCRYPTION_KEY.
"""

from django.core.management.base import BaseCommand, CommandError

from dlqadmin.crypto import DecryptionError
from dlqadmin.services.connections import connections_reencrypt


class Command(BaseCommand):
    help = "Re-encrypt every stored broker credential under the newest DLQADMIN_ENCRYPTION_KEY key."

    def handle(self, *args, **options):
        try:
            counts = connections_reencrypt()
        except DecryptionError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{counts['reencrypted']} credential(s) re-encrypted under the newest key, "
            f"{counts['already_current']} already under it, {counts['empty']} empty, "
            f"in {counts['connections']} connection(s)."
        )
