"""Measurements 1-3, per broker: the raw client ceiling (drain with manual ack / commit, publish
with confirms) side by side with dlqadmin's harvest (``source_harvest`` into PostgreSQL) and
redrive (a job run by a real Celery worker process, every message confirmed by the broker).

Before the brokers, in the same window, the database ceiling (:mod:`bench.ceiling`): harvest and
redrive are also reported against min(raw client, database), for information; the targets stay
against the raw client (issue 8)."""

from __future__ import annotations

import time

from django.conf import settings
from django.utils import timezone

from dlqadmin.models import DeadLetter, RedriveJob, Source
from dlqadmin.selectors import DeadLetterFilter
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import source_harvest
from dlqadmin.services.redrive.jobs import redrive_job_create

from . import ceiling as db
from . import processes
from .context import Context
from .report import Metric

TARGET = 0.70
SQS_REDRIVE_CAP = 500  # msg/s, AWS SQS dead-letter queue redrive
FINISHED = {"completed", "failed", "cancelled"}


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def wait_for_job(job: RedriveJob, timeout: float) -> RedriveJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in FINISHED:
            return job
        time.sleep(0.05)
    raise RuntimeError(f"redrive job {job.pk} still {job.status} after {timeout:.0f}s ({job.succeeded} sent)")


def redrive_all(source: Source, batch_size: int, count: int) -> tuple[RedriveJob, float, float]:
    """Create a job over every dead letter of ``source`` and wait for the worker to finish it;
    returns the job, the seconds from the request to the last confirmed message, and the seconds
    of those the request itself took (plan, claim every message, write the attempts)."""
    started = timezone.now()
    job = redrive_job_create(filters=DeadLetterFilter(sources=[str(source.pk)]), batch_size=batch_size)
    created = (timezone.now() - started).total_seconds()
    job = wait_for_job(job, timeout=max(120.0, count / 50))
    return job, (job.finished_at - started).total_seconds(), created


def measure_broker(ctx: Context, kind: str, ceiling: db.Ceiling) -> list[Metric]:
    n, prefix = ctx.config.n, ctx.config.prefix("-")
    bench = ctx.broker(kind, "tp")
    bench.setup()
    try:
        conn = connection_create(name=f"{prefix}-tp-{kind}", **bench.connection_kwargs())
        source = Source.objects.create(connection=conn, name=f"{prefix}-tp-{kind}", **bench.source_kwargs())

        bench.make_dead_letters(n)
        drain_s = bench.raw_drain(n)
        if kind == "rabbitmq":  # the raw drain took them: dead-letter the same kind again
            bench.make_dead_letters(n)
        started = time.perf_counter()
        report = source_harvest(source=source)
        harvest_s = time.perf_counter() - started
        stored = DeadLetter.objects.filter(source=source).count()
        if stored != n:
            raise RuntimeError(f"{kind}: harvested {stored} of {n} ({report})")

        publish_s = bench.raw_publish(n)
        bench.purge_destination()
        before = bench.destination_count()
        job, redrive_s, create_s = redrive_all(source, ctx.config.redrive_batch, n)
        arrived = bench.destination_count() - before
        if job.succeeded != n or arrived < n:
            raise RuntimeError(
                f"{kind}: redrive {job.status}, {job.succeeded} confirmed, {arrived} arrived of {n}"
            )
    finally:
        bench.cleanup()

    label = bench.label
    drain, harvest = _rate(n, drain_s), _rate(n, harvest_s)
    publish, redrive = _rate(n, publish_s), _rate(n, redrive_s)
    return [
        Metric("throughput", f"{label}: raw drain", f"{drain:,.0f} msg/s", numbers={"rate": drain, "n": n}),
        Metric(
            "throughput",
            f"{label}: harvest",
            f"{harvest:,.0f} msg/s",
            f">= {TARGET:.0%} of raw drain",
            harvest / drain >= TARGET,
            harvest / drain,
            f"{n:,} dead letters through source_harvest (batch {settings.DLQADMIN_HARVEST_BATCH_SIZE}) "
            f"into PostgreSQL in {harvest_s:.1f} s (raw drain {drain_s:.1f} s)",
            {"rate": harvest, "n": n, "seconds": harvest_s},
        ),
        _versus(
            label, "harvest", harvest, ("raw drain", drain), ("database store ceiling", ceiling.store.rate)
        ),
        Metric(
            "throughput", f"{label}: raw publish", f"{publish:,.0f} msg/s", numbers={"rate": publish, "n": n}
        ),
        Metric(
            "throughput",
            f"{label}: redrive",
            f"{redrive:,.0f} msg/s",
            f">= {TARGET:.0%} of raw publish",
            redrive / publish >= TARGET,
            redrive / publish,
            f"one job of {n:,} (batch {job.batch_size}) through a Celery worker process, every message "
            f"confirmed, {redrive_s:.1f} s from request to last confirm, of which {create_s:.1f} s creating "
            f"the job (raw publish {publish_s:.1f} s); "
            f"{redrive / SQS_REDRIVE_CAP:.1f}x the SQS redrive cap of {SQS_REDRIVE_CAP} msg/s",
            {"rate": redrive, "n": n, "seconds": redrive_s, "create_seconds": create_s},
        ),
        _versus(
            label,
            "redrive",
            redrive,
            ("raw publish", publish),
            ("database status-update ceiling", ceiling.update.rate),
        ),
    ]


def _versus(
    label: str, what: str, rate: float, raw: tuple[str, float], database: tuple[str, float]
) -> Metric:
    """``rate`` as a ratio to the lower of the raw client and the database ceiling (no target)."""
    (bound_name, bound), (other_name, other) = sorted([raw, database], key=lambda pair: pair[1])
    return Metric(
        "throughput",
        f"{label}: {what} / min(raw, database)",
        f"{rate:,.0f} of {bound:,.0f} msg/s",
        ratio=rate / bound,
        detail=f"bounded by the {bound_name} ({bound:,.0f} msg/s; {other_name} {other:,.0f} msg/s); "
        f"{rate / raw[1]:.2f} of the {raw[0]}, {rate / database[1]:.2f} of the {database[0]}",
        numbers={"rate": rate, "bound": bound, "raw": raw[1], "database": database[1]},
    )


def run(ctx: Context) -> list[Metric]:
    ceiling = db.measure(ctx.config, ctx.env["DATABASE_URL"])  # before the worker: nothing else runs
    metrics = db.metrics(ceiling)
    worker = processes.celery_worker(ctx.env, ctx.celery_queue, ctx.log_dir / "worker-throughput.log")
    try:
        for kind in ctx.config.brokers:
            metrics += measure_broker(ctx, kind, ceiling)
    finally:
        worker.stop()
    return metrics
