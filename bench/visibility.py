"""Measurement 6: dead-lettered on the broker -> visible through the API, with the follow-mode
harvester (``manage.py harvest --follow``, default poll interval) watching one source per broker.

Samples rotate over the brokers with a random pause in between, so they land anywhere in the
harvester's poll cycle; each is timed from the moment the broker took the dead letter (the
reject, the DLT write's ack, the DLQ publish's PubAck is awaited after the clock starts) to the
first API answer that lists it."""

from __future__ import annotations

import random
import time

from dlqadmin.models import Source
from dlqadmin.services.connections import connection_create

from . import processes, users
from .context import Context
from .report import Metric, summary

TARGET_P95 = 2.0
TIMEOUT = 15.0
POLL = 0.02


def _newest_id(client, list_url: str, source: Source) -> int:
    response = client.get(list_url, {"source": source.pk, "page_size": 1})
    if response.status_code != 200:
        raise RuntimeError(f"{list_url} answered {response.status_code}")
    results = response.json()["results"]
    return results[0]["id"] if results else 0


def _sample(client, list_url: str, bench, source: Source, last_id: int) -> tuple[float, int]:
    started = bench.dead_letter_one()
    deadline = started + TIMEOUT
    while time.monotonic() < deadline:
        newest = _newest_id(client, list_url, source)
        if newest > last_id:
            return time.monotonic() - started, newest
        time.sleep(POLL)
    raise RuntimeError(f"{bench.label}: a dead letter was not visible after {TIMEOUT:.0f} s")


def run(ctx: Context) -> list[Metric]:
    config, prefix = ctx.config, ctx.config.prefix("-")
    list_url = users.url("dlq-api-message-list")
    if list_url is None:
        return [Metric("visibility", "time to visibility", "not measured: no API message list URL")]
    client = users.signed_in_client()
    benches, sources = {}, {}
    harvester = None
    try:
        for kind in config.brokers:
            bench = benches[kind] = ctx.broker(kind, "vis")
            bench.setup()
            conn = connection_create(name=f"{prefix}-vis-{kind}", **bench.connection_kwargs())
            sources[kind] = Source.objects.create(
                connection=conn, name=f"{prefix}-vis-{kind}", **bench.source_kwargs()
            )
        harvester = processes.follow_harvester(
            ctx.env, [s.name for s in sources.values()], ctx.log_dir / "harvester.log"
        )
        last = {kind: 0 for kind in benches}
        for kind, bench in benches.items():  # warm-up: connections open, first pass done
            _, last[kind] = _sample(client, list_url, bench, sources[kind], last[kind])
        rng = random.Random(6)
        samples: dict[str, list[float]] = {kind: [] for kind in benches}
        kinds = list(benches)
        for i in range(config.visibility_samples):
            kind = kinds[i % len(kinds)]
            time.sleep(rng.uniform(0, 0.3))
            seconds, last[kind] = _sample(client, list_url, benches[kind], sources[kind], last[kind])
            samples[kind].append(seconds)
    finally:
        if harvester is not None:
            harvester.stop()
        for bench in benches.values():
            bench.cleanup()
    metrics = []
    everything = [s for values in samples.values() for s in values]
    for kind, values in [*samples.items(), ("all", everything)]:
        if not values:
            continue
        stats = summary(values)
        label = benches[kind].label if kind in benches else "all brokers"
        metrics.append(
            Metric(
                "visibility",
                f"time to visibility, {label}",
                f"p50 {stats['p50']:.2f} s / p95 {stats['p95']:.2f} s",
                f"p95 <= {TARGET_P95:g} s",
                stats["p95"] <= TARGET_P95,
                stats["p95"] / TARGET_P95,
                f"{stats['samples']} samples, max {stats['max']:.2f} s; harvester poll interval 0.5 s "
                "(the command's default), API polled every 20 ms",
                stats,
            )
        )
    return metrics
