"""What every measurement gets: the config, the background event loop, the environment for the
processes it starts (bench database, the run's own Celery queue), a log directory, run notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .aio import BackgroundLoop
from .config import BenchConfig


@dataclass
class Context:
    config: BenchConfig
    loop: BackgroundLoop
    env: dict[str, str]
    log_dir: Path
    celery_queue: str
    notes: list[str] = field(default_factory=list)

    def broker(self, kind: str, tag: str):
        """A fresh, uniquely named broker topology helper for ``kind`` (not yet set up)."""
        if kind == "rabbitmq":
            from .broker_rabbitmq import RabbitBench

            return RabbitBench(self.config, self.loop, tag)
        if kind == "kafka":
            from .broker_kafka import KafkaBench

            return KafkaBench(self.config, self.loop, tag)
        from .broker_nats import NatsBench

        return NatsBench(self.config, self.loop, tag)
