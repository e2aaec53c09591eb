"""Measurement 5: peak RSS of the Celery worker while it redrives BENCH_REDRIVE_RSS_N messages.

The dead letters are COPYed in (harvested-looking RabbitMQ rows whose origin queue exists), the
job runs on a fresh worker (prefork, one pool process), every message is confirmed by RabbitMQ.
Reported: the largest single-process peak (VmHWM of the pool process doing the work, or of the
main process if larger); the sampled peak of the whole worker tree is in the details."""

from __future__ import annotations

import random

from django.utils import timezone

from dlqadmin.models import Source
from dlqadmin.services.connections import connection_create

from . import processes, table
from .context import Context
from .report import Metric
from .throughput import redrive_all

TARGET_MB = 256


def run(ctx: Context) -> list[Metric]:
    config, prefix, count = ctx.config, ctx.config.prefix("-"), ctx.config.rss_n
    bench = ctx.broker("rabbitmq", "rss")
    bench.setup()
    worker = None
    try:
        conn = connection_create(name=f"{prefix}-rss", **bench.connection_kwargs())
        source = Source.objects.create(connection=conn, name=f"{prefix}-rss", **bench.source_kwargs())
        rng, now = random.Random(5), timezone.now()

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
        worker = processes.celery_worker(ctx.env, ctx.celery_queue, ctx.log_dir / "worker-memory.log")
        idle_kib = processes.status_kib(worker.pid, "VmRSS")
        with processes.RssSampler(worker.pid) as sampler:
            job, seconds, _ = redrive_all(source, config.redrive_batch, count)
        arrived = bench.destination_count()
        if job.succeeded != count or arrived < count:
            raise RuntimeError(f"memory run: {job.succeeded} confirmed, {arrived} arrived of {count}")
    finally:
        if worker is not None:
            worker.stop()
        bench.cleanup()
    peak = sampler.peak_single_kib / 1024
    return [
        Metric(
            "memory",
            f"worker peak RSS, redrive of {count:,}",
            f"{peak:.0f} MiB",
            f"<= {TARGET_MB} MB",
            peak * 1.048576 <= TARGET_MB,
            peak * 1.048576 / TARGET_MB,
            f"largest worker process peak (VmHWM); whole worker tree sampled peak "
            f"{sampler.peak_tree_kib / 1024:.0f} MiB (main + pool process, shared pages counted twice); "
            f"idle worker {idle_kib / 1024:.0f} MiB; {count:,} messages in {seconds:.0f} s "
            f"({count / seconds:,.0f} msg/s, batch {job.batch_size})",
            {"peak_mib": peak, "tree_mib": sampler.peak_tree_kib / 1024, "seconds": seconds},
        )
    ]
