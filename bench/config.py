"""What a bench run does, from the environment (every knob has a default for ``make bench``).

==========================  =================================================================
``BENCH_N``                 messages per broker for the raw / harvest / redrive runs (20 000)
``BENCH_BROKERS``           comma-separated subset of rabbitmq,kafka,nats (all)
``BENCH_ONLY``              comma-separated subset of throughput,visibility,memory,latency,scale,many (all)
``BENCH_TABLE_ROWS``        dead letters COPYed into the database before anything runs (1 000 000)
``BENCH_LATENCY_SAMPLES``   requests per latency case (200)
``BENCH_LATENCY_SECONDS``   time cap per latency case, seconds (10)
``BENCH_REDRIVE_RSS_N``     messages in the redrive whose worker RSS is measured (50 000)
``BENCH_VISIBILITY_SAMPLES``  time-to-visibility samples, spread over the brokers (200)
``BENCH_REDRIVE_BATCH``     redrive job batch size (500, the dashboard / API default)
``BENCH_PEER_BATCH``        the peer pipeline's batch size, harvest and redrive (500)
``BENCH_SEARCHABLE_SAMPLES``  of the visibility samples, how many also wait for ``q=`` (60)
``BENCH_SCALE_N``           messages of the job two workers redrive at a velocity (50 000)
``BENCH_SCALE_VELOCITY``    that job's velocity, msg/s (2 000)
``BENCH_SCALE_BIG_N``       the big job a 10-message job must not wait behind (200 000)
``BENCH_SCALE_HARVEST_N``   dead letters two harvester replicas store, per broker (20 000)
``BENCH_MANY_SOURCES``      sources (over the three brokers) on one harvester replica (300)
``BENCH_MANY_SAMPLES``      time-to-visibility samples over those sources (120)
``BENCH_MANY_RATE``         dead letters per second fed to them during the samples (2)
``BENCH_OUTPUT``            the Markdown report (docs/benchmarks.md)
``BENCH_JSON``              also write the results as JSON here (optional)
``BENCH_DATABASE_URL``      server to create the bench database on (default: DATABASE_URL's)
``BENCH_KEEP_DB``           1 = do not drop the bench database (for EXPLAIN ANALYZE afterwards)
==========================  =================================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROKERS = ("rabbitmq", "kafka", "nats")
PARTS = ("throughput", "visibility", "memory", "latency", "scale", "many")


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip().replace("_", "")
    return int(raw) if raw else default


def _list(name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return allowed
    chosen = tuple(item.strip() for item in raw.split(",") if item.strip())
    unknown = set(chosen) - set(allowed)
    if unknown:
        raise SystemExit(f"{name}: unknown {', '.join(sorted(unknown))} (choose from {', '.join(allowed)})")
    return chosen


@dataclass(frozen=True)
class BenchConfig:
    n: int = 20_000
    brokers: tuple[str, ...] = BROKERS
    parts: tuple[str, ...] = PARTS
    table_rows: int = 1_000_000
    latency_samples: int = 200
    latency_seconds: float = 10.0
    rss_n: int = 50_000
    visibility_samples: int = 200
    redrive_batch: int = 500
    peer_batch: int = 500
    searchable_samples: int = 60
    scale_n: int = 50_000
    scale_velocity: int = 2_000
    scale_big_n: int = 200_000
    scale_harvest_n: int = 20_000
    many_sources: int = 300
    many_samples: int = 120
    many_rate: float = 2.0
    output: Path = ROOT / "docs" / "benchmarks.md"
    json_path: Path | None = None
    database_url: str = ""
    keep_db: bool = False
    run_id: str = field(default_factory=lambda: f"{os.getpid()}")
    amqp_url: str = "amqp://127.0.0.1:5672/"
    kafka_bootstrap: str = "127.0.0.1:9092"
    nats_url: str = "nats://127.0.0.1:4222"

    @classmethod
    def from_env(cls) -> BenchConfig:
        json_path = os.environ.get("BENCH_JSON", "").strip()
        return cls(
            n=_int("BENCH_N", 20_000),
            brokers=_list("BENCH_BROKERS", BROKERS),
            parts=_list("BENCH_ONLY", PARTS),
            table_rows=_int("BENCH_TABLE_ROWS", 1_000_000),
            latency_samples=_int("BENCH_LATENCY_SAMPLES", 200),
            latency_seconds=float(os.environ.get("BENCH_LATENCY_SECONDS") or 10),
            rss_n=_int("BENCH_REDRIVE_RSS_N", 50_000),
            visibility_samples=_int("BENCH_VISIBILITY_SAMPLES", 200),
            redrive_batch=_int("BENCH_REDRIVE_BATCH", 500),
            peer_batch=_int("BENCH_PEER_BATCH", 500),
            searchable_samples=_int("BENCH_SEARCHABLE_SAMPLES", 60),
            scale_n=_int("BENCH_SCALE_N", 50_000),
            scale_velocity=_int("BENCH_SCALE_VELOCITY", 2_000),
            scale_big_n=_int("BENCH_SCALE_BIG_N", 200_000),
            scale_harvest_n=_int("BENCH_SCALE_HARVEST_N", 20_000),
            many_sources=_int("BENCH_MANY_SOURCES", 300),
            many_samples=_int("BENCH_MANY_SAMPLES", 120),
            many_rate=float(os.environ.get("BENCH_MANY_RATE") or 2),
            output=Path(os.environ.get("BENCH_OUTPUT") or ROOT / "docs" / "benchmarks.md"),
            json_path=Path(json_path) if json_path else None,
            database_url=os.environ.get("BENCH_DATABASE_URL")
            or os.environ.get("DATABASE_URL")
            or "postgres://postgres@127.0.0.1:5432/postgres",
            keep_db=os.environ.get("BENCH_KEEP_DB", "") in {"1", "true", "yes"},
            amqp_url=os.environ.get("AMQP_URL") or "amqp://127.0.0.1:5672/",
            kafka_bootstrap=os.environ.get("KAFKA_BOOTSTRAP") or "127.0.0.1:9092",
            nats_url=os.environ.get("NATS_URL") or "nats://127.0.0.1:4222",
        )

    def prefix(self, sep: str = ".") -> str:
        """A name prefix no other run (or test) uses: ``bench.<run id>``."""
        return f"bench{sep}{self.run_id}"
