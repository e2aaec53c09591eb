"""Measurement 6: dead-lettered on the broker -> visible through the API, with the follow-mode
harvester (``manage.py harvest --follow``, default poll interval) watching one source per broker.

Samples rotate over the brokers with a random pause in between, so they land anywhere in the
harvester's poll cycle; each is timed from the moment the broker took the dead letter (the
reject, the DLT write's ack, the DLQ publish's PubAck is awaited after the clock starts) to the
first API answer that lists it.

Time to searchable (issue 15), on ``BENCH_SEARCHABLE_SAMPLES`` of those samples, picked at
random over the run: once the message is listed (the harvest committed it), the API list is asked
as a user searches, ``?source=<its source>&q=<its order id>`` (the id is in the payload), until
the answer holds that message; timed from the first listing to that answer. Nothing here knows
how search is built: an index filled after the store only shows up as a longer wait."""

from __future__ import annotations

import random
import time

from dlqadmin.models import Source
from dlqadmin.services.connections import connection_create

from . import data, processes, users
from .context import Context
from .report import Metric, summary

TARGET_P95 = 2.0
SEARCHABLE_P95 = 10.0
TIMEOUT = 15.0
SEARCH_TIMEOUT = 60.0
POLL = 0.02


def _newest_id(client, list_url: str, source: Source) -> int:
    response = client.get(list_url, {"source": source.pk, "page_size": 1})
    if response.status_code != 200:
        raise RuntimeError(f"{list_url} answered {response.status_code}")
    results = response.json()["results"]
    return results[0]["id"] if results else 0


def _sample(client, list_url: str, bench, source: Source, last_id: int) -> tuple[float, int]:
    """Dead-letter one message and wait for the list to show it: (seconds, its id)."""
    started = bench.dead_letter_one()
    deadline = started + TIMEOUT
    while time.monotonic() < deadline:
        newest = _newest_id(client, list_url, source)
        if newest > last_id:
            return time.monotonic() - started, newest
        time.sleep(POLL)
    raise RuntimeError(f"{bench.label}: a dead letter was not visible after {TIMEOUT:.0f} s")


def _searchable(client, list_url: str, source: Source, text: str, letter_id: int) -> float:
    """Seconds until a free-text search for ``text`` in ``source`` lists ``letter_id``."""
    started = time.monotonic()
    while time.monotonic() < started + SEARCH_TIMEOUT:
        response = client.get(list_url, {"source": source.pk, "q": text})
        if response.status_code != 200:
            raise RuntimeError(f"{list_url}?q={text} answered {response.status_code}")
        if any(row["id"] == letter_id for row in response.json()["results"]):
            return time.monotonic() - started
        time.sleep(POLL)
    raise RuntimeError(
        f"dead letter {letter_id} listed but not found by q={text} after {SEARCH_TIMEOUT:.0f} s"
    )


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
        searched: dict[str, list[float]] = {kind: [] for kind in benches}
        kinds = list(benches)
        total = config.visibility_samples
        # spread over the run and the brokers (a fixed stride could land on one broker only)
        tracked = set(random.Random(15).sample(range(total), min(config.searchable_samples, total)))
        for i in range(total):
            kind = kinds[i % len(kinds)]
            time.sleep(rng.uniform(0, 0.3))
            order = data.order_id(benches[kind].sent)  # the payload of the message about to die
            seconds, last[kind] = _sample(client, list_url, benches[kind], sources[kind], last[kind])
            samples[kind].append(seconds)
            if i in tracked:
                searched[kind].append(_searchable(client, list_url, sources[kind], order, last[kind]))
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
    metrics.append(_searchable_metric(searched, benches))
    return metrics


def _searchable_metric(searched: dict[str, list[float]], benches: dict) -> Metric:
    everything = [s for values in searched.values() for s in values]
    if not everything:
        return Metric("visibility", "time to searchable", "not measured: BENCH_SEARCHABLE_SAMPLES=0")
    stats = summary(everything)
    per_broker = ", ".join(
        f"{benches[kind].label} p95 {summary(values)['p95']:.2f} s"
        for kind, values in searched.items()
        if values
    )
    return Metric(
        "visibility",
        "time to searchable, all brokers",
        f"p50 {stats['p50']:.2f} s / p95 {stats['p95']:.2f} s",
        f"p95 <= {SEARCHABLE_P95:g} s",
        stats["p95"] <= SEARCHABLE_P95,
        stats["p95"] / SEARCHABLE_P95,
        f"{stats['samples']} samples ({per_broker}), max {stats['max']:.2f} s: from the first API list "
        "answer showing the dead letter (the harvest committed it) until the API list with "
        "source=<its source>&q=<its order id> returns it, polled every 20 ms",
        stats,
    )
