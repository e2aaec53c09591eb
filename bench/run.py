"""Orchestrates a bench run: database, table, each measurement, the table and the report."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from django.conf import settings as django_settings

from . import database, report
from .aio import BackgroundLoop
from .config import BenchConfig
from .context import Context

PART_TITLES = {
    "throughput": "database and raw ceilings, harvest and redrive",
    "visibility": "time to visibility",
    "memory": "worker memory",
    "latency": "dashboard and API latency",
    "scale": "redrive scale-out (two workers, fairness, per core)",
    "many": "many sources on one harvester",
}


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _django(config: BenchConfig, url: str, queue: str) -> dict[str, str]:
    """Point this process (and the processes it starts) at the bench database and queue."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        BENCH_RUN_ID=config.run_id,
        DATABASE_URL=url,
        CELERY_TASK_DEFAULT_QUEUE=queue,
    )
    import django

    django.setup()
    for noisy in ("aio_pika", "aiormq", "nats", "brokers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return dict(os.environ)


def _delete_queue(queue: str) -> None:
    from dlqadmin.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
    except Exception:  # noqa: BLE001 - cleanup only
        pass


def _run_part(part: str, ctx: Context, fixture) -> list[report.Metric]:
    if part == "throughput":
        from . import throughput

        return throughput.run(ctx)
    if part == "visibility":
        from . import visibility

        return visibility.run(ctx)
    if part == "memory":
        from . import memory

        return memory.run(ctx)
    if part == "many":
        from . import many_sources

        return many_sources.run(ctx)
    if part == "scale":
        from . import scale

        return scale.run(ctx)
    from . import latency

    return latency.run(ctx, fixture)


def main() -> int:
    config = BenchConfig.from_env()
    started = time.monotonic()
    name = f"dlqadmin_bench_{config.run_id}"
    queue = f"{config.prefix()}.celery"
    log_dir = Path(tempfile.mkdtemp(prefix="dlqadmin-bench-"))
    _log(f"bench database {name}, logs in {log_dir}")
    url = database.create(config.database_url, name)
    loop = BackgroundLoop()
    metrics: list[report.Metric] = []
    failed = False
    try:
        env = _django(config, url, queue)
        facts = {**report.machine(), "date": report.now_text()}
        _log(f"migrated in {database.migrate():.1f} s")
        facts.update(database.server_facts())
        ctx = Context(config=config, loop=loop, env=env, log_dir=log_dir, celery_queue=queue)
        fixture = None
        if config.table_rows:
            from . import table

            _log(f"writing {config.table_rows:,} dead letters with COPY")
            fixture = table.populate(
                prefix=f"{config.prefix('-')}-t", urls=_urls(config), count=config.table_rows
            )
            _log(f"table ready in {fixture.seconds:.0f} s")
            ctx.notes.append(
                f"{config.table_rows:,} dead letters were COPYed in before any measurement "
                f"({fixture.seconds:.0f} s including index builds and VACUUM ANALYZE)"
            )
        for part in config.parts:
            _log(f"measuring {PART_TITLES[part]}")
            try:
                got = _run_part(part, ctx, fixture)
            except Exception as exc:  # noqa: BLE001 - report it, run the other parts
                failed = True
                traceback.print_exc()
                got = [
                    report.Metric(
                        part,
                        f"{PART_TITLES[part]}",
                        f"error: {type(exc).__name__}: {exc}"[:200],
                        passed=False,
                    )
                ]
            metrics += got
            for metric in got:
                _log(f"  {metric.name}: {metric.value} {metric.verdict}")
        facts["elapsed"] = f"{(time.monotonic() - started) / 60:.1f} min"
        settings = {
            "BENCH_N": f"{config.n:,}",
            "brokers": ", ".join(config.brokers),
            "table rows": f"{config.table_rows:,}",
            "latency samples": f"{config.latency_samples} (cap {config.latency_seconds:g} s per case)",
            "BENCH_REDRIVE_RSS_N": f"{config.rss_n:,}",
            "visibility samples": config.visibility_samples,
            "redrive batch": config.redrive_batch,
            "scale-out": f"{config.scale_n:,} at {config.scale_velocity:,}/s, "
            f"fairness vs {config.scale_big_n:,}",
            "many sources": f"{config.many_sources} sources, {config.many_samples} samples at "
            f"{config.many_rate:g}/s",
            "harvest batch": django_settings.DLQADMIN_HARVEST_BATCH_SIZE,
        }
        print()
        print(report.render_text(metrics))
        print()
        block = report.render_markdown(metrics, facts, settings, ctx.notes)
        report.write_markdown(config.output, block)
        _log(f"report written to {config.output}")
        if config.json_path:
            report.write_json(config.json_path, metrics, facts, settings)
    finally:
        _delete_queue(queue)
        loop.close()
        from django.db import connections

        connections.close_all()
        if config.keep_db:
            _log(f"kept database {name} ({url})")
        else:
            database.drop(config.database_url, name)
    if not failed:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 1 if failed else 0


def _urls(config: BenchConfig) -> dict[str, str]:
    return {"rabbitmq": config.amqp_url, "kafka": config.kafka_bootstrap, "nats": config.nats_url}


if __name__ == "__main__":
    sys.exit(main())
