"""Heartbeats: long-running components say they are alive (read by /metrics)."""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

from django.utils import timezone

from dlqadmin.models import Heartbeat

ALIVE_SECONDS = 90
_last_beat: dict[str, float] = {}


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def heartbeat_beat(*, component: str, every: float = 5.0) -> None:
    """Record that this process's ``component`` is alive (at most once per ``every`` seconds)."""
    now = time.monotonic()
    if now - _last_beat.get(component, -1e9) < every:
        return
    _last_beat[component] = now
    Heartbeat.objects.update_or_create(
        component=component, instance=instance_name(), defaults={"last_seen": timezone.now()}
    )


def alive_instances(component: str) -> int:
    cutoff = timezone.now() - timedelta(seconds=ALIVE_SECONDS)
    return Heartbeat.objects.filter(component=component, last_seen__gte=cutoff).count()
