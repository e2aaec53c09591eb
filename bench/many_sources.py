"""Measurement 8: many sources on one harvester replica (issue 18).

``BENCH_MANY_SOURCES`` sources (default 300) split over the three brokers, one dlqadmin
connection per broker: RabbitMQ dead-letter queues, Kafka dead-letter topics (one partition, one
consumer group each) and NATS JetStream DLQ streams. ONE real ``manage.py harvest --follow``
watches them all. Warm-up: one dead letter on every source, all must become visible (every
connection is open, every Kafka group joined). Then a feeder dead-letters
``BENCH_MANY_SAMPLES`` messages at a steady ``BENCH_MANY_RATE`` per second, each on the next
source of a shuffled rotation (so nearly every sample lands on a source that was idle until
then), and each is timed from just before the broker took it (publish confirm / produce ack /
PubAck awaited after the clock starts) to the first API list answer for its source that shows
it (pending samples are polled every 50 ms). The harvester's RSS (its process tree, VmRSS) is
read after the warm-up, at the middle and at the end of the feed: flat memory means the end is
within 10 % of the start."""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass

import aio_pika
import nats
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from nats.js.api import StreamConfig

from dlqadmin.models import Source
from dlqadmin.services.connections import connection_create

from . import data, processes, users
from .context import Context
from .report import Metric, summary
from .scale import cpu_seconds

TARGET_P95 = 2.0
TARGET_GROWTH = 0.10
TIMEOUT = 30.0
POLL = 0.05
KINDS = ("rabbitmq", "kafka", "nats")
LABELS = {"rabbitmq": "RabbitMQ", "kafka": "Kafka", "nats": "NATS JetStream"}


@dataclass
class _Target:
    kind: str
    address: str  # queue / topic / stream
    subject: str = ""  # NATS: the subject the stream takes
    source: Source | None = None
    last_id: int = 0


class _Brokers:
    """The run's topology on the three brokers and one publishing client per broker."""

    def __init__(self, ctx: Context, count: int):
        self.ctx, self.config = ctx, ctx.config
        run = self.config.run_id
        self.targets: list[_Target] = []
        kinds = [kind for kind in KINDS if kind in self.config.brokers]
        for i in range(count):
            kind = kinds[i % len(kinds)]
            if kind == "rabbitmq":
                self.targets.append(_Target(kind, f"{self.config.prefix()}.many.{i}.dlq"))
            elif kind == "kafka":
                self.targets.append(_Target(kind, f"{self.config.prefix()}.many.{i}-dlt"))
            else:
                self.targets.append(
                    _Target(kind, f"BENCH_{run}_MANY_{i}_DLQ", f"{self.config.prefix()}.many.{i}.dlq")
                )
        self.amqp = self.channel = self.nc = self.js = None
        self.admin = AdminClient({"bootstrap.servers": self.config.kafka_bootstrap})
        self.producer = Producer(
            {"bootstrap.servers": self.config.kafka_bootstrap, "acks": "all", "linger.ms": 0}
        )
        self.sent = 0

    def of(self, kind: str) -> list[_Target]:
        return [t for t in self.targets if t.kind == kind]

    def setup(self) -> None:
        async def setup():
            self.amqp = await aio_pika.connect(self.config.amqp_url, login="guest", password="guest")
            self.channel = await self.amqp.channel(publisher_confirms=True)
            for target in self.of("rabbitmq"):
                await self.channel.declare_queue(target.address, durable=True)
            self.nc = await nats.connect(self.config.nats_url, connect_timeout=5)
            self.js = self.nc.jetstream(timeout=10)
            for target in self.of("nats"):
                await self.js.add_stream(StreamConfig(name=target.address, subjects=[target.subject]))

        self.ctx.loop.run(setup(), timeout=300)
        topics = [t.address for t in self.of("kafka")]
        if topics:
            futures = self.admin.create_topics([NewTopic(t, 1, 1) for t in topics])
            for future in futures.values():
                future.result(60)
            deadline = time.monotonic() + 60
            while not set(topics) <= set(self.admin.list_topics(timeout=10).topics):
                if time.monotonic() > deadline:
                    raise RuntimeError("Kafka topics did not appear in the metadata")
                time.sleep(0.2)

    def cleanup(self) -> None:
        async def cleanup():
            if self.channel is not None:
                for target in self.of("rabbitmq"):
                    await self.channel.queue_delete(target.address)
                await self.amqp.close()
            if self.js is not None:
                for target in self.of("nats"):
                    with contextlib.suppress(Exception):  # cleanup only
                        await self.js.delete_stream(target.address)
                await self.nc.close()

        try:
            self.ctx.loop.run(cleanup(), timeout=120)
        finally:
            self.producer.flush(10)
            topics = [t.address for t in self.of("kafka")]
            if topics:
                for future in self.admin.delete_topics(topics).values():
                    with contextlib.suppress(Exception):  # cleanup only
                        future.result(30)

    def dead_letter(self, target: _Target) -> float:
        """Put one dead letter on ``target``; returns the monotonic time before the broker took it."""
        n = self.sent
        self.sent += 1
        headers = {"tenant": data.tenant(n), "x-request-id": f"req-{n:08d}"}
        at = time.monotonic()
        if target.kind == "kafka":
            failed: list = []
            self.producer.produce(
                target.address,
                key=data.order_id(n).encode(),
                value=data.payload(n),
                headers=list(headers.items()),
                on_delivery=lambda err, _msg: err and failed.append(err),
            )
            if self.producer.flush(30) or failed:
                raise RuntimeError(f"Kafka produce failed: {failed[:1]}")
        elif target.kind == "rabbitmq":
            message = aio_pika.Message(data.payload(n), headers=headers, content_type="application/json")
            self.ctx.loop.run(
                self.channel.default_exchange.publish(message, routing_key=target.address), timeout=30
            )
        else:
            self.ctx.loop.run(self.js.publish(target.subject, data.payload(n), headers=headers), timeout=30)
        return at


def _newest_id(client, list_url: str, source: Source) -> int:
    response = client.get(list_url, {"source": source.pk, "page_size": 1})
    if response.status_code != 200:
        raise RuntimeError(f"{list_url} answered {response.status_code}")
    results = response.json()["results"]
    return results[0]["id"] if results else 0


def _rss_mib(pid: int) -> float:
    return sum(processes.status_kib(p, "VmRSS") for p in processes.process_tree(pid)) / 1024


def _feed(brokers: _Brokers, client, list_url: str, total: int, rate: float, at_middle, every) -> dict:
    """Dead-letter ``total`` messages at ``rate``/s (a shuffled rotation over the sources, never
    two pending on one source; ``at_middle()`` once half are sent, ``every()`` every 10 s);
    returns {kind: [seconds]}."""
    rng = random.Random(18)
    order = brokers.targets[:]
    rng.shuffle(order)
    samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
    pending: dict[int, tuple[_Target, float]] = {}
    sent, turn = 0, 0
    started = tick = time.monotonic()
    while sent < total or pending:
        now = time.monotonic()
        if now - tick >= 10:
            every()
            tick = now
        if sent < total and now >= started + sent / rate:
            target = order[turn % len(order)]
            if id(target) not in pending:  # else wait until its previous sample is visible
                turn += 1
                pending[id(target)] = (target, brokers.dead_letter(target))
                sent += 1
                if sent == total // 2:
                    at_middle()
        for key, (target, at) in list(pending.items()):
            newest = _newest_id(client, list_url, target.source)
            if newest > target.last_id:
                samples[target.kind].append(time.monotonic() - at)
                target.last_id = newest
                del pending[key]
            elif time.monotonic() - at > TIMEOUT:
                raise RuntimeError(f"{target.address}: a dead letter was not visible after {TIMEOUT:.0f} s")
        yield_at = started + sent / rate if sent < total else time.monotonic() + POLL
        time.sleep(max(0.0, min(POLL, yield_at - time.monotonic())))
    return samples


def _warm_up(brokers: _Brokers, client, list_url: str) -> float:
    """One dead letter on every source; returns seconds until all were visible."""
    started = time.monotonic()
    for target in brokers.targets:
        brokers.dead_letter(target)
    waiting = list(brokers.targets)
    while waiting:
        if time.monotonic() - started > 120:
            raise RuntimeError(f"warm-up: {len(waiting)} source(s) showed nothing after 120 s")
        still = []
        for target in waiting:
            target.last_id = _newest_id(client, list_url, target.source)
            if not target.last_id:
                still.append(target)
        waiting = still
        time.sleep(0.2)
    return time.monotonic() - started


def run(ctx: Context) -> list[Metric]:
    config, prefix = ctx.config, ctx.config.prefix("-")
    list_url = users.url("dlq-api-message-list")
    if list_url is None:
        return [Metric("many", "many sources", "not measured: no API message list URL")]
    client = users.signed_in_client()
    count, total, rate = config.many_sources, config.many_samples, config.many_rate
    brokers = _Brokers(ctx, count)
    harvester = None
    rss: dict[str, float] = {}
    series: list[float] = []  # every 10 s of the feed
    try:
        brokers.setup()
        conns = {
            "rabbitmq": connection_create(
                name=f"{prefix}-many-rmq",
                kind="rabbitmq",
                url=config.amqp_url,
                username="guest",
                password="guest",
            ),
            "kafka": connection_create(name=f"{prefix}-many-kafka", kind="kafka", url=config.kafka_bootstrap),
            "nats": connection_create(name=f"{prefix}-many-nats", kind="nats", url=config.nats_url),
        }
        for i, target in enumerate(brokers.targets):
            kwargs = {"mode": {"rabbitmq": "queue", "kafka": "topic", "nats": "dlq_stream"}[target.kind]}
            if target.kind == "kafka":
                kwargs["options"] = {"group_id": f"{config.prefix()}.many.{i}.dlqadmin"}
            target.source = Source.objects.create(
                connection=conns[target.kind], name=f"{prefix}-many-{i}", address=target.address, **kwargs
            )
        harvester = processes.follow_harvester(
            ctx.env, [t.source.name for t in brokers.targets], ctx.log_dir / "harvester-many.log"
        )
        warm = _warm_up(brokers, client, list_url)
        rss["start"] = _rss_mib(harvester.pid)
        cpu_from, fed_from = cpu_seconds(harvester.pid), time.monotonic()

        def at_middle() -> None:
            rss["middle"] = _rss_mib(harvester.pid)

        def every() -> None:
            series.append(round(_rss_mib(harvester.pid), 1))

        samples = _feed(brokers, client, list_url, total, rate, at_middle, every)
        rss["end"] = _rss_mib(harvester.pid)
        cpu = (cpu_seconds(harvester.pid) - cpu_from) / (time.monotonic() - fed_from)
        rss.setdefault("middle", rss["end"])
    finally:
        if harvester is not None:
            harvester.stop()
        brokers.cleanup()
    per_kind = {kind: brokers.of(kind) for kind in KINDS}
    return _metrics(count, total, rate, warm, samples, rss, series, per_kind, cpu)


def _metrics(count, total, rate, warm, samples, rss, series, per_kind, cpu) -> list[Metric]:
    metrics = []
    everything = [s for values in samples.values() for s in values]
    split = ", ".join(f"{len(values)} {LABELS[k]}" for k, values in per_kind.items() if values)
    for kind, values in [*samples.items(), ("all", everything)]:
        if not values:
            continue
        stats = summary(values)
        label = LABELS.get(kind, "all brokers")
        metrics.append(
            Metric(
                "many",
                f"{count} sources on one harvester: time to visibility, {label}",
                f"p50 {stats['p50']:.2f} s / p95 {stats['p95']:.2f} s",
                f"p95 <= {TARGET_P95:g} s",
                stats["p95"] <= TARGET_P95,
                stats["p95"] / TARGET_P95,
                f"{stats['samples']} samples at {rate:g}/s over {count} sources ({split}), max "
                f"{stats['max']:.2f} s; warm-up (one dead letter on every source) visible in {warm:.1f} s",
                {**stats, "sources": count},
            )
        )
    growth = (rss["end"] - rss["start"]) / rss["start"] if rss.get("start") else float("nan")
    metrics.append(
        Metric(
            "many",
            f"{count} sources on one harvester: RSS start / middle / end",
            f"{rss['start']:.0f} / {rss['middle']:.0f} / {rss['end']:.0f} MiB",
            f"end within {TARGET_GROWTH:.0%} of start",
            growth <= TARGET_GROWTH,
            (1 + growth) / (1 + TARGET_GROWTH),
            f"VmRSS of the harvester process tree after the warm-up, after {total // 2} and after "
            f"{total} samples ({growth:+.1%}); the harvester used {cpu:.0%} of a core meanwhile",
            {**rss, "growth": growth, "every_10s": series, "cpu_cores": cpu},
        )
    )
    return metrics
