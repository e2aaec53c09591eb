"""Measurement 7: redrive scale-out with two real Celery worker processes (issue 18).

* **Two workers, one job, a velocity**: ``BENCH_SCALE_N`` RabbitMQ dead letters (COPYed in,
  origin queue real) redriven at ``BENCH_SCALE_VELOCITY`` by two workers (two lanes). The job's
  rate (messages / (last confirm - start)) must be within 10 % of the limit: the limit is the
  job's, not each worker's. Each message must arrive once (the destination queue's depth) and the
  counters be exact. The CPU time both worker process trees spent gives msg/s per core.
* **Fairness**: a ``BENCH_SCALE_BIG_N`` job (no velocity) holds both workers; a 10-message job
  created once it runs must finish within 5 s.
* **Per-core redrive cost, no velocity**: the big job's messages / the CPU seconds of both
  worker trees while it ran (the model in docs/benchmarks.md).
* **Per-core harvest cost**, per broker: two follow-mode harvester replicas on one source of
  ``BENCH_SCALE_HARVEST_N`` dead letters; messages / the CPU seconds both replicas used.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from django.db.models import Max, Min
from django.utils import timezone

from dlqadmin.models import Source
from dlqadmin.selectors import DeadLetterFilter
from dlqadmin.services.connections import connection_create
from dlqadmin.services.redrive.jobs import redrive_job_create

from . import processes, table
from .context import Context
from .report import Metric
from .throughput import wait_for_job

SMALL_JOB_SECONDS = 5.0
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of every process in the tree of ``pid`` (seconds)."""
    total = 0
    for member in processes.process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def _source(ctx: Context, tag: str, count: int):
    prefix = ctx.config.prefix("-")
    bench = ctx.broker("rabbitmq", tag)
    bench.setup()
    conn = connection_create(name=f"{prefix}-{tag}", **bench.connection_kwargs())
    source = Source.objects.create(connection=conn, name=f"{prefix}-{tag}", **bench.source_kwargs())
    rng, now = random.Random(6), timezone.now()

    def rows():
        for n in range(count):
            values = table.row(n, source, now, rng, kind=n % 3)
            values.update(
                origin_exchange=bench.exchange,
                origin_queue=bench.work_queue,
                status="new",
                redrive_count=0,
                last_redriven_at=None,
            )
            yield values

    table.copy_rows(rows(), count)
    table.analyze()
    return bench, source


def _every(source: Source) -> DeadLetterFilter:
    """The whole source as a filter job (a 50 000-message job is beyond a selection of ids)."""
    return DeadLetterFilter(sources=[str(source.pk)])


def _velocity_row(ctx: Context, workers, n: int, velocity: int) -> Metric:
    bench, source = _source(ctx, "scale-v", n)
    try:
        cpu_before = sum(cpu_seconds(w.pid) for w in workers)
        job = redrive_job_create(
            filters=_every(source), velocity=velocity, batch_size=ctx.config.redrive_batch
        )
        job = wait_for_job(job, timeout=max(120.0, 3 * n / velocity))
        arrived = bench.destination_count()
        cpu = sum(cpu_seconds(w.pid) for w in workers) - cpu_before
    finally:
        bench.cleanup()
    seconds = (job.finished_at - job.started_at).total_seconds()
    # the first chunk is recorded at t0 + c, the last one (n - chunk) / velocity later
    first, last = job.attempts.aggregate(first=Min("finished_at"), last=Max("finished_at")).values()
    chunk = min(job.batch_size, velocity)
    rate = (n - chunk) / max(1e-6, (last - first).total_seconds())
    exact = (job.total, job.succeeded, job.failed, job.skipped) == (n, n, 0, 0) and arrived == n
    return Metric(
        "scale",
        f"redrive, 2 workers on one job of {n:,} at velocity {velocity:,}/s",
        f"{rate:,.0f} msg/s",
        f"{velocity:,}/s +-10 %, each once",
        abs(rate - velocity) <= 0.1 * velocity and exact,
        rate / velocity,
        f"rate = (n - one {chunk}-message chunk) / (last chunk recorded - first chunk recorded); "
        f"{n:,} in {seconds:.1f} s (job started -> finished); {arrived:,} arrived on the destination queue; "
        f"counters total {job.total:,} succeeded {job.succeeded:,} failed {job.failed} "
        f"skipped {job.skipped}; "
        f"workers' CPU {cpu:.1f} s",
        {"rate": rate, "seconds": seconds, "arrived": arrived, "cpu_seconds": cpu},
    )


def _fairness_rows(ctx: Context, workers, big_n: int) -> list[Metric]:
    bench, big_source = _source(ctx, "scale-big", big_n)
    small_bench, small_source = _source(ctx, "scale-small", 10)
    try:
        cpu_before = sum(cpu_seconds(w.pid) for w in workers)
        big = redrive_job_create(filters=_every(big_source), batch_size=ctx.config.redrive_batch)
        deadline = time.monotonic() + 60
        while big.succeeded == 0 and big.finished_at is None and time.monotonic() < deadline:
            time.sleep(0.02)
            big.refresh_from_db()
        posted = time.monotonic()
        small = redrive_job_create(filters=_every(small_source))
        small = wait_for_job(small, timeout=60)
        took = time.monotonic() - posted
        big.refresh_from_db()
        big_running = big.finished_at is None
        big = wait_for_job(big, timeout=max(120.0, big_n / 50))
        cpu = sum(cpu_seconds(w.pid) for w in workers) - cpu_before
        arrived = bench.destination_count()
    finally:
        bench.cleanup()
        small_bench.cleanup()
    seconds = (big.finished_at - big.started_at).total_seconds()
    per_core = big_n / cpu if cpu else float("nan")
    note = "" if big_running else " (the big job had already finished: not a fairness test at this size)"
    return [
        Metric(
            "scale",
            f"redrive fairness: a 10-message job during a {big_n:,}-message job",
            f"{took:.2f} s",
            f"<= {SMALL_JOB_SECONDS:g} s",
            took <= SMALL_JOB_SECONDS and small.succeeded == 10,
            took / SMALL_JOB_SECONDS,
            f"created after the big job's first confirm, finished in {took:.2f} s{note}; "
            f"2 workers, {big.batch_size}-message chunks",
            {"seconds": took, "big_running": big_running},
        ),
        Metric(
            "scale",
            f"redrive per core, 2 workers, {big_n:,} messages (no velocity)",
            f"{per_core:,.0f} msg/s per core",
            "",
            None,
            None,
            f"{big_n:,} in {seconds:.1f} s = {big_n / seconds:,.0f} msg/s wall; both worker trees used "
            f"{cpu:.1f} CPU s; {arrived:,} arrived; the machine's other cores run PostgreSQL and the broker",
            {"per_core": per_core, "cpu_seconds": cpu, "rate": big_n / seconds, "arrived": arrived},
        ),
    ]


BROKER_NAMES = {"rabbitmq": "RabbitMQ", "kafka": "Kafka", "nats": "NATS JetStream"}


def _harvest_row(ctx: Context, kind: str, n: int) -> Metric:
    """Two follow-mode harvester replicas on one source holding ``n`` dead letters: the source is
    enabled once both are up (their start-up CPU is not counted); the row is ``n`` / the CPU
    seconds both replicas used until every dead letter was stored."""
    prefix = ctx.config.prefix("-")
    bench = ctx.broker(kind, "scale-h")
    bench.setup()
    replicas = []
    try:
        bench.make_dead_letters(n)
        conn = connection_create(name=f"{prefix}-scale-h-{kind}", **bench.connection_kwargs())
        source = Source.objects.create(
            connection=conn, name=f"{prefix}-scale-h-{kind}", enabled=False, **bench.source_kwargs()
        )
        for i in range(2):
            log = ctx.log_dir / f"harvester-scale-{kind}-{i}.log"
            replicas.append(processes.follow_harvester(ctx.env, [source.name], log))
        before = [cpu_seconds(p.pid) for p in replicas]
        started = time.monotonic()
        Source.objects.filter(pk=source.pk).update(enabled=True)
        deadline = started + max(120.0, n / 50)
        while source.dead_letters.count() < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: {source.dead_letters.count()} of {n} stored")
            time.sleep(0.1)
        seconds = time.monotonic() - started
        used = [cpu_seconds(p.pid) - b for p, b in zip(replicas, before, strict=True)]
    finally:
        for replica in replicas:
            replica.stop()
        bench.cleanup()
    cpu = sum(used)
    return Metric(
        "scale",
        f"harvest per core, 2 replicas, {BROKER_NAMES[kind]} {n:,}",
        f"{n / cpu:,.0f} msg/s per core",
        "",
        None,
        None,
        f"{n:,} stored in {seconds:.1f} s = {n / seconds:,.0f} msg/s wall; replicas' CPU "
        f"{' + '.join(f'{u:.1f}' for u in used)} s (PostgreSQL and the broker not counted)",
        {"per_core": n / cpu, "cpu_seconds": cpu, "per_replica": used, "rate": n / seconds},
    )


def run(ctx: Context) -> list[Metric]:
    config = ctx.config
    env = {**ctx.env, "DLQADMIN_REDRIVE_LANES": "2"}
    workers = []
    try:
        for i in range(2):
            workers.append(
                processes.celery_worker(env, ctx.celery_queue, ctx.log_dir / f"worker-scale-{i}.log")
            )
        metrics = [_velocity_row(ctx, workers, config.scale_n, config.scale_velocity)]
        metrics += _fairness_rows(ctx, workers, config.scale_big_n)
    finally:
        for worker in workers:
            worker.stop()
    for kind in config.brokers:
        metrics.append(_harvest_row(ctx, kind, config.scale_harvest_n))
    return metrics
