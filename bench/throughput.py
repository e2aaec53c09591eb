"""Measurements 1-3, per broker: the raw client ceiling (drain with manual ack / commit, publish
with confirms) and the peer pipeline (:mod:`bench.peer`, what a team would write by hand) side
by side with dlqadmin's harvest (``source_harvest`` into PostgreSQL) and redrive (a job run by a
real Celery worker process, every message confirmed by the broker). dlqadmin / peer has the
issue 15 target (>= 0.70); dlqadmin / raw client keeps the issue 8 one.

Before the brokers, in the same window, the database ceiling (:mod:`bench.ceiling`): harvest and
redrive are also reported against min(raw client, database), for information."""

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
from . import peer, processes
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
    """Raw client, peer pipeline and dlqadmin on the same broker, one after the other."""
    n, prefix, url = ctx.config.n, ctx.config.prefix("-"), ctx.env["DATABASE_URL"]
    peer_batch = ctx.config.peer_batch
    bench = ctx.broker(kind, "tp")
    bench.setup()
    try:
        conn = connection_create(name=f"{prefix}-tp-{kind}", **bench.connection_kwargs())
        source = Source.objects.create(connection=conn, name=f"{prefix}-tp-{kind}", **bench.source_kwargs())

        bench.make_dead_letters(n)
        drain_s = bench.raw_drain(n)
        if kind == "rabbitmq":  # the raw drain took them: dead-letter the same kind again
            bench.make_dead_letters(n)
        peer_harvest_s = peer.harvest(bench, url, n, peer_batch, ctx.loop)
        if peer.stored(url, kind) != n:
            raise RuntimeError(f"{kind}: the peer harvested {peer.stored(url, kind)} of {n}")
        if kind == "rabbitmq":  # and the peer took them
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
        peer_redrive_s = peer.redrive(bench, url, peer_batch, ctx.loop)
        arrived = bench.destination_count() - before
        if arrived < n:
            raise RuntimeError(f"{kind}: the peer redrive delivered {arrived} of {n}")
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
    peer_harvest, peer_redrive = _rate(n, peer_harvest_s), _rate(n, peer_redrive_s)
    tag = {"broker": label, "n": n}
    return [
        Metric(
            "throughput",
            f"{label}: raw drain",
            f"{drain:,.0f} msg/s",
            numbers={"rate": drain, **tag, "flow": "harvest", "side": "raw"},
        ),
        Metric(
            "throughput",
            f"{label}: peer harvest",
            f"{peer_harvest:,.0f} msg/s",
            detail=f"{n:,} dead letters read with the plain client, COPYed into a minimal table in "
            f"batches of {peer_batch}, each committed then acked ({peer_harvest_s:.1f} s)",
            numbers={
                "rate": peer_harvest,
                **tag,
                "seconds": peer_harvest_s,
                "flow": "harvest",
                "side": "peer",
            },
        ),
        Metric(
            "throughput",
            f"{label}: harvest",
            f"{harvest:,.0f} msg/s",
            f">= {TARGET:.0%} of raw drain",
            harvest / drain >= TARGET,
            harvest / drain,
            f"{n:,} dead letters through source_harvest (batch {settings.DLQADMIN_HARVEST_BATCH_SIZE}) "
            f"into PostgreSQL in {harvest_s:.1f} s (raw drain {drain_s:.1f} s)",
            {"rate": harvest, **tag, "seconds": harvest_s, "flow": "harvest", "side": "dlqadmin"},
        ),
        _versus_peer(label, "harvest", harvest, peer_harvest),
        _versus(
            label, "harvest", harvest, ("raw drain", drain), ("database store ceiling", ceiling.store.rate)
        ),
        Metric(
            "throughput",
            f"{label}: raw publish",
            f"{publish:,.0f} msg/s",
            numbers={"rate": publish, **tag, "flow": "redrive", "side": "raw"},
        ),
        Metric(
            "throughput",
            f"{label}: peer redrive",
            f"{peer_redrive:,.0f} msg/s",
            detail=f"the {n:,} peer rows selected, then per batch of {peer_batch}: read, published with "
            f"confirms, one upsert into a narrow status table, committed ({peer_redrive_s:.1f} s)",
            numbers={
                "rate": peer_redrive,
                **tag,
                "seconds": peer_redrive_s,
                "flow": "redrive",
                "side": "peer",
            },
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
            {
                "rate": redrive,
                **tag,
                "seconds": redrive_s,
                "create_seconds": create_s,
                "flow": "redrive",
                "side": "dlqadmin",
            },
        ),
        _versus_peer(label, "redrive", redrive, peer_redrive),
        _versus(
            label,
            "redrive",
            redrive,
            ("raw publish", publish),
            ("database status-update ceiling", ceiling.update.rate),
        ),
    ]


def _versus_peer(label: str, what: str, rate: float, peer_rate: float) -> Metric:
    """dlqadmin's ``rate`` against the peer pipeline's, measured in the same run (issue 15)."""
    ratio = rate / peer_rate
    return Metric(
        "throughput",
        f"{label}: {what} / peer",
        f"{rate:,.0f} of {peer_rate:,.0f} msg/s",
        f">= {TARGET:.0%} of peer {what}",
        ratio >= TARGET,
        ratio,
        numbers={"rate": rate, "peer": peer_rate, "broker": label, "flow": what, "side": "ratio"},
    )


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
    url, worker = ctx.env["DATABASE_URL"], None
    try:
        fill_s = peer.create(url, ctx.config.table_rows)
        ctx.notes.append(
            f"the peer's table was prefilled with {ctx.config.table_rows:,} rows of ~1 KiB in {fill_s:.0f} s "
            "(generate_series, then its unique index, then VACUUM ANALYZE), like dlqadmin's; "
            "the peer tables are dropped after the throughput part"
        )
        worker = processes.celery_worker(ctx.env, ctx.celery_queue, ctx.log_dir / "worker-throughput.log")
        for kind in ctx.config.brokers:
            metrics += measure_broker(ctx, kind, ceiling)
    finally:
        if worker is not None:
            worker.stop()
        peer.drop(url)
    return metrics
