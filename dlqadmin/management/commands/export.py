"""``manage.py export [--filter QUERY] [--format jsonl|csv] [--output FILE]`` (streaming)."""

import sys

from django.core.management.base import BaseCommand

from dlqadmin.selectors import dead_letters
from dlqadmin.services.export import iter_csv, iter_jsonl

from ._filters import parse_filter


class Command(BaseCommand):
    help = "Export dead letters as JSON-lines (lossless, importable) or CSV (summary)."

    def add_arguments(self, parser):
        parser.add_argument("--filter", default="", help="Query string, same syntax as the dashboard URL.")
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        parser.add_argument("--output", "-o", help="File to write (default: standard output).")

    def handle(self, *args, filter, format, output, **opts):  # noqa: A002 - option names
        qs = dead_letters(parse_filter(filter)).order_by("id")
        # the system's own export (user=None): lossless, never masked
        chunks = iter_jsonl(qs, user=None) if format == "jsonl" else iter_csv(qs, user=None)
        stream = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout  # noqa: SIM115
        count = 0
        try:
            for chunk in chunks:
                stream.write(chunk)
                count += 1
        finally:
            if output:
                stream.close()
        if output:
            lines = count - 1 if format == "csv" else count
            self.stderr.write(f"Wrote {lines} dead letter(s) to {output}")
