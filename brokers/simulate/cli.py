"""Command line of the demo traffic generator: ``python -m brokers.simulate`` (what ``make demo``
runs; SIGTERM / Ctrl-C stop it cleanly). See :mod:`brokers.simulate` for the options."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections import Counter
from collections.abc import Awaitable, Callable

from .common import check_prefix, log
from .kafka import kafka_setup, kafka_traffic
from .nats import nats_setup, nats_traffic
from .rabbitmq import rabbitmq_setup, rabbitmq_traffic

# The first line of the package docstring, as --help has always shown it.
DESCRIPTION = "Demo traffic: create demo topologies and produce *genuine* dead letters on each broker."


async def _until_stopped(name: str, run: Callable[[], Awaitable[Counter]], stop: asyncio.Event) -> None:
    """Keep one broker's traffic going; a broker hiccup is logged and retried, not fatal."""
    delay = 1.0
    while not stop.is_set():
        try:
            caused = await run()
            log.info("%s: stopped after %s", name, dict(caused))
            return
        except Exception as exc:  # noqa: BLE001 - keep the demo alive through broker restarts
            log.warning("%s traffic failed (%s); retrying in %.0fs", name, exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30)


async def main(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    common = {"prefix": args.prefix, "rate": args.rate, "count": args.count, "duration": args.duration}
    runs: dict[str, Callable[[], Awaitable[Counter]]] = {}
    if args.rabbitmq_url:
        if args.setup:
            await rabbitmq_setup(args.rabbitmq_url, prefix=args.prefix)
        runs["rabbitmq"] = lambda: rabbitmq_traffic(args.rabbitmq_url, stop=stop, **common)
    if args.kafka_bootstrap:
        if args.setup:
            await asyncio.to_thread(kafka_setup, args.kafka_bootstrap, prefix=args.prefix)
        runs["kafka"] = lambda: kafka_traffic(args.kafka_bootstrap, stop=stop, **common)
    if args.nats_url:
        if args.setup:
            await nats_setup(args.nats_url, prefix=args.prefix)
        runs["nats"] = lambda: nats_traffic(args.nats_url, stop=stop, **common)
    if not runs:
        log.error("nothing to do: give at least one of --rabbitmq-url, --kafka-bootstrap, --nats-url")
        return 2
    log.info(
        "producing about %.1f dead letters/s on each of %s (prefix %r); SIGTERM or Ctrl-C stops",
        args.rate,
        ", ".join(runs),
        args.prefix,
    )
    if args.count is not None or args.duration is not None:
        results = await asyncio.gather(*(run() for run in runs.values()))
        for name, caused in zip(runs, results, strict=True):
            log.info("%s: %s", name, dict(caused))
        return 0
    await asyncio.gather(*(_until_stopped(name, run, stop) for name, run in runs.items()))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m brokers.simulate", description=DESCRIPTION)
    parser.add_argument("--rabbitmq-url", help="amqp://user:pass@host:5672/vhost (skip RabbitMQ if absent)")
    parser.add_argument("--kafka-bootstrap", help="host:port[,host:port] (skip Kafka if absent)")
    parser.add_argument("--nats-url", help="nats://host:4222 (skip NATS if absent)")
    parser.add_argument("--prefix", default="demo", help="resource name prefix (default: demo)")
    parser.add_argument("--rate", type=float, default=2.0, help="dead letters per second per broker")
    parser.add_argument("--count", type=int, help="stop after this many failures per broker")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--setup", action="store_true", help="create the topology first (idempotent)")
    args = parser.parse_args(argv)
    try:
        check_prefix(args.prefix)
    except ValueError as exc:
        parser.error(str(exc))
    if args.rate <= 0:
        parser.error("--rate must be positive")
    return args
