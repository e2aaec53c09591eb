"""``manage.py harvest [--source NAME] [--limit N] [--follow]``.

Without ``--follow``: one harvest pass per source, prints counts. With ``--follow``: the
long-running harvester (SIGTERM/SIGINT stop it after the batch in progress is stored).
"""

import asyncio
import signal

from django.core.management.base import BaseCommand, CommandError

from brokers.base import BrokerError
from dlqadmin.models import Source
from dlqadmin.services.audit import audit_record
from dlqadmin.services.harvest.follow import Harvester
from dlqadmin.services.harvest.store import DB_OUTAGES, failure_text, source_harvest


class Command(BaseCommand):
    help = "Harvest dead letters from every enabled source (or one) into the database, once."

    def add_arguments(self, parser):
        parser.add_argument(
            "--source", action="append", help="Source name (repeatable). Default: all enabled."
        )
        parser.add_argument("--limit", type=int, default=None, help="At most this many messages per source.")
        parser.add_argument("--follow", action="store_true", help="Keep harvesting until stopped (SIGTERM).")
        parser.add_argument("--poll-interval", type=float, default=0.5, help="Seconds between idle passes.")
        parser.add_argument(
            "--concurrency",
            type=int,
            default=8,
            help="With --follow: passes run at once per connection (its sources are polled together).",
        )
        parser.add_argument(
            "--max-backoff",
            type=float,
            default=30.0,
            help="Longest wait before retrying a broker or the database that is down.",
        )

    def handle(
        self, *args, source=None, limit=None, follow=False, poll_interval=0.5, max_backoff=30.0, **options
    ):
        if follow:
            concurrency = options.get("concurrency", 8)
            if concurrency < 1:
                raise CommandError("--concurrency must be at least 1")
            return self.follow(source, limit, poll_interval, max_backoff, concurrency)
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
            except DB_OUTAGES:
                raise
            except Exception as exc:  # noqa: BLE001 - recorded on the source; the others go on
                failures += 1
                self.stderr.write(f"{src.name}: FAILED: {failure_text(exc)}")
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

    def follow(self, names, limit, poll_interval, max_backoff, concurrency=8):
        harvester = Harvester(
            source_names=names,
            poll_interval=poll_interval,
            pass_limit=limit or 1000,
            max_backoff=max_backoff,
            concurrency=concurrency,
        )

        async def main():
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, harvester.stop)
            await harvester.run()

        self.stdout.write("Harvesting continuously; SIGTERM or Ctrl-C stops after the batch in progress.")
        self.stdout.flush()
        asyncio.run(main())
        self.stdout.write("Harvester stopped cleanly.")
