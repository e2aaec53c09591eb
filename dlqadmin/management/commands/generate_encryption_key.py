"""``manage.py generate_encryption_key``: print a new Fernet key for DLQADMIN_ENCRYPTION_KEY.

To rotate keys, put the new key first in DLQADMIN_ENCRYPTION_KEY (``NEW,OLD``), restart, run
``manage.py rotate_encryption_key``, then drop the old key (docs/deployment.md).
"""

from django.core.management.base import BaseCommand

from dlqadmin.crypto import generate_key


class Command(BaseCommand):
    help = "Print a new Fernet key for DLQADMIN_ENCRYPTION_KEY (nothing is stored)."

    def handle(self, *args, **options):
        self.stdout.write(generate_key())
