"""``manage.py redrive --filter QUERY | --ids 1,2 [--dry-run] [--velocity N] [--wait | --here]``."""

import json
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from dlqadmin.models import RedriveJob
from dlqadmin.services.redrive import destination as routes
from dlqadmin.services.redrive import options as bounds
from dlqadmin.services.redrive.jobs import RedriveError, redrive_job_create, redrive_plan
from dlqadmin.services.redrive.worker import redrive_job_step

from ._filters import parse_filter, parse_ids

FINAL = {"completed", "cancelled", "failed"}


class Command(BaseCommand):
    help = "Plan and run a redrive job for dead letters chosen by id or by filter (dashboard URL syntax)."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument(
            "--filter", help='Query string, e.g. "source=orders-dlq&status=new&reason=rejected".'
        )
        which.add_argument("--ids", help="Comma-separated dead letter ids.")
        parser.add_argument("--dry-run", action="store_true", help="Print the plan; change nothing.")
        parser.add_argument(
            "--velocity",
            type=float,
            help=f"Messages per second, {bounds.MIN_VELOCITY:g} to {bounds.MAX_VELOCITY} (default: none).",
        )
        parser.add_argument(
            "--batch-size", type=int, default=bounds.DEFAULT_BATCH, help=f"1 to {bounds.MAX_BATCH}."
        )
        parser.add_argument("--destination", help='JSON, e.g. \'{"topic": "orders"}\' (default: original).')
        parser.add_argument("--override-loop-guard", action="store_true")
        parser.add_argument("--user", help="Username the job and audit trail are attributed to.")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--wait", action="store_true", help="Wait for the Celery workers to finish the job."
        )
        mode.add_argument("--here", action="store_true", help="Process the job in this process (no worker).")

    def handle(self, *args, **opts):
        ids = parse_ids(opts["ids"]) if opts["ids"] else None
        if ids is not None and bounds.ids_problem(len(ids)):
            raise CommandError(f"--ids: {bounds.ids_problem(len(ids))} (--filter)")
        filters = None if ids is not None else parse_filter(opts["filter"])
        try:
            destination = json.loads(opts["destination"]) if opts["destination"] else None
        except ValueError as exc:
            raise CommandError(f"--destination is not JSON: {exc}") from None
        problems = bounds.option_problems(
            destination=destination, velocity=opts["velocity"], batch_size=opts["batch_size"]
        )
        if problems:  # before the plan, so a --dry-run says so too
            raise CommandError("; ".join(f"--{k.replace('_', '-')}: {v}" for k, v in problems.items()))
        actor = None
        if opts["user"]:
            actor = get_user_model().objects.filter(username=opts["user"]).first()
            if actor is None:
                raise CommandError(f"unknown user {opts['user']!r}")
        try:
            plan = redrive_plan(
                ids=ids,
                filters=filters,
                override_loop_guard=opts["override_loop_guard"],
                destination=destination,
            )
        except RedriveError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Plan: {plan.total} selected, {plan.redrivable} to redrive, "
            f"{plan.parked} parked by the loop guard, {plan.busy} already in an active job, "
            f"{plan.needs_destination} need a destination"
        )
        for d in plan.destinations:
            where = d["reason"] if d["route"] == routes.NEEDS_DESTINATION else d["destination"]
            label = routes.ROUTE_LABELS[d["route"]]
            self.stdout.write(f"  {d['count']:>7}  {d['kind']}  {d['source']} -> {where}  [{label}]")
        if plan.needs_destination:
            self.stdout.write(
                f"{plan.needs_destination} message(s) have no recorded origin: a job skips them unless "
                "--destination gives one."
            )
        if opts["dry_run"]:
            self.stdout.write("Dry run: nothing was changed.")
            return
        try:
            job = redrive_job_create(
                actor=actor,
                ids=plan.ids,
                filters=filters if ids is None else None,
                destination=destination,
                velocity=opts["velocity"],
                batch_size=opts["batch_size"],
                override_loop_guard=opts["override_loop_guard"],
            )
        except RedriveError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Created redrive job #{job.pk} with {job.total} message(s) ({job.skipped} skipped)."
        )
        if opts["here"]:
            while True:
                result = redrive_job_step(job_id=job.pk)
                if not result.more:
                    break
                time.sleep(result.delay)
        if opts["here"] or opts["wait"]:
            self._wait(job)

    def _wait(self, job: RedriveJob) -> None:
        while True:
            job.refresh_from_db()
            self.stdout.write(
                f"  {job.status}: {job.succeeded} redriven, {job.failed} failed, "
                f"{job.skipped} skipped of {job.total}"
            )
            if job.status in FINAL:
                break
            time.sleep(1)
        if job.failed:
            raise CommandError(f"job #{job.pk}: {job.failed} message(s) failed; see the job page")
