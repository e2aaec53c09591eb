"""Heartbeats: long-running components say they are alive (read by /metrics)."""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

from django.utils import timezone

from dlqadmin.models import HARVESTER_BEAT_SECONDS, SILENT_SECONDS, Heartbeat

ALIVE_SECONDS = 90
__all__ = ["ALIVE_SECONDS", "HARVESTER_BEAT_SECONDS", "SILENT_SECONDS", "heartbeat_beat", "heartbeat_stopped"]
_last_beat: dict[str, float] = {}


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def heartbeat_beat(*, component: str, every: float = 5.0, details: dict | None = None) -> None:
    """Record that this process's ``component`` is alive (at most once per ``every`` seconds),
    with what it holds (``details``, kept as it was when not given)."""
    now = time.monotonic()
    if now - _last_beat.get(component, -1e9) < every:
        return
    _last_beat[component] = now
    defaults: dict = {"last_seen": timezone.now()}
    if details is not None:
        defaults["details"] = details
    Heartbeat.objects.update_or_create(component=component, instance=instance_name(), defaults=defaults)


def heartbeat_stopped(*, component: str, details: dict | None = None) -> None:
    """This process's ``component`` shut down cleanly: say so at once (a replica killed with -9
    shows as stopped once it missed :data:`SILENT_SECONDS` of beats)."""
    _last_beat.pop(component, None)
    stopped = {**(details or {}), "stopped_at": timezone.now().isoformat()}
    Heartbeat.objects.update_or_create(
        component=component, instance=instance_name(), defaults={"details": stopped}
    )


def alive_instances(component: str) -> int:
    cutoff = timezone.now() - timedelta(seconds=ALIVE_SECONDS)
    return Heartbeat.objects.filter(component=component, last_seen__gte=cutoff).count()
