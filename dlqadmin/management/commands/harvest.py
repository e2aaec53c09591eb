"""``manage.py harvest [--source NAME] [--limit N]``: one harvest pass, prints counts."""

from django.core.management.base import BaseCommand, CommandError

from brokers.base import BrokerError
from dlqadmin.models import Source
from dlqadmin.services.audit import audit_record
from dlqadmin.services.harvest import source_harvest


class Command(BaseCommand):
    help = "Harvest dead letters from every enabled source (or one) into the database, once."

    def add_arguments(self, parser):
        parser.add_argument(
            "--source", action="append", help="Source name (repeatable). Default: all enabled."
        )
        parser.add_argument("--limit", type=int, default=None, help="At most this many messages per source.")

    def handle(self, *args, source=None, limit=None, **options):
        sources = Source.objects.select_related("connection")
        if source:
            sources = sources.filter(name__in=source)
            missing = set(source) - set(sources.values_list("name", flat=True))
            if missing:
                raise CommandError(f"unknown source(s): {', '.join(sorted(missing))}")
        else:
            sources = sources.filter(enabled=True)
        if not sources:
            self.stdout.write("No enabled sources. Add one in the dashboard or the API first.")
            return
        failures = 0
        for src in sources:
            try:
                report = source_harvest(source=src, limit=limit)
            except BrokerError as exc:
                failures += 1
                self.stderr.write(
                    f"{src.name}: FAILED ({'permanent' if exc.permanent else 'transient'}): {exc}"
                )
                continue
            backlog = "unknown" if report.backlog is None else report.backlog
            self.stdout.write(
                f"{src.name}: received {report.received}, stored {report.inserted} new, "
                f"{report.duplicates} already stored, backlog {backlog}"
            )
            if report.inserted:
                audit_record(action="harvest", target=src, count=report.inserted, detail={"via": "cli"})
        if failures:
            raise CommandError(f"{failures} source(s) failed to harvest")
