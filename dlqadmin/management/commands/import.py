"""``manage.py import FILE [--source NAME]``: store a JSON-lines export (idempotent)."""

import sys

from django.core.management.base import BaseCommand, CommandError

from dlqadmin.models import Source
from dlqadmin.services.audit import audit_record
from dlqadmin.services.export import ImportError_, import_jsonl


class Command(BaseCommand):
    help = (
        "Import dead letters from a `manage.py export` JSON-lines file. Already-stored records are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="JSON-lines file ('-' for standard input).")
        parser.add_argument(
            "--source", help="Store every record into this source (default: the record's own)."
        )

    def handle(self, *args, file, source=None, **opts):
        target = None
        if source:
            target = Source.objects.filter(name=source).first()
            if target is None:
                raise CommandError(f"unknown source {source!r}")
        try:
            if file == "-":
                result = import_jsonl(sys.stdin, source=target)
            else:
                with open(file, encoding="utf-8") as handle:
                    result = import_jsonl(handle, source=target)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc}") from None
        except ImportError_ as exc:
            raise CommandError(str(exc)) from None
        audit_record(
            action="messages.import", count=result.inserted, detail={"file": file, "read": result.read}
        )
        self.stdout.write(
            f"Read {result.read}, stored {result.inserted} new, {result.duplicates} already stored."
        )
