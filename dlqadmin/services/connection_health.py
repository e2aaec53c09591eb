"""Connection health from what the components see, not only from "Test connection".

The harvester and the redrive workers talk to the brokers all the time; each success or failure
they see is evidence of the connection's health. ``connection_observe`` records it, at most once
per ``DLQADMIN_HEALTH_RECORD_SECONDS`` per connection and process (a harvester polling every
half second does not write twice a second), but at once when the state or the error changes
(ok -> error or back), so an outage shows within one pass. ``connections_check_idle`` (beat) asks the broker
about the connections nobody has reported on for ``DLQADMIN_HEALTH_IDLE_SECONDS`` (no enabled
source, no redrive), so every connection's health has an age.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

import brokers
from brokers.base import Health
from dlqadmin.models import Connection, HealthStatus
from dlqadmin.services.connections import connection_config, connection_record_health

log = logging.getLogger(__name__)

HARVESTER = "harvester"
REDRIVE_WORKER = "redrive worker"
BEAT_CHECK = "beat check"

#: connection id -> (monotonic time of this process's last write, ok then, error then)
_written: dict[int, tuple[float, bool, str]] = {}


def observe_due(connection_id: int, ok: bool, error: str = "") -> bool:
    """Whether an observation would be written now: always when the state or the error changed,
    else once per DLQADMIN_HEALTH_RECORD_SECONDS (no database access: callers on an event loop
    ask before hopping to a thread)."""
    last = _written.get(connection_id)
    if last is None or last[1:] != (ok, error):
        return True
    return time.monotonic() - last[0] >= settings.DLQADMIN_HEALTH_RECORD_SECONDS


def connection_observe(*, connection_id: int, ok: bool, by: str, error: str = "") -> bool:
    """Record that ``by`` found the connection working (``ok``) or not (``error``: the cause).
    Rate-limited (see the module docstring); returns whether it wrote. Never raises for a
    connection deleted meanwhile."""
    error = "" if ok else error
    if not observe_due(connection_id, ok, error):
        return False
    _written[connection_id] = (time.monotonic(), ok, error)
    changes = {
        "health_status": HealthStatus.OK if ok else HealthStatus.ERROR,
        "last_checked_at": timezone.now(),
        "last_error": "" if ok else (error or "unreachable")[:2000],
        "health_checked_by": by[:32],
    }
    Connection.objects.filter(pk=connection_id).update(**changes)
    if not ok:
        log.warning("connection %s unhealthy (seen by %s): %s", connection_id, by, changes["last_error"])
    return True


def connections_check_idle(*, now=None, timeout: float = 5.0) -> int:
    """Ask the broker of every connection nobody reported on for DLQADMIN_HEALTH_IDLE_SECONDS
    (all at once, each within ``timeout``) and record the answers as "beat check". Returns how
    many were checked. Never raises for broker trouble."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.DLQADMIN_HEALTH_IDLE_SECONDS)
    idle = list(Connection.objects.filter(Q(last_checked_at__isnull=True) | Q(last_checked_at__lt=cutoff)))
    if not idle:
        return 0
    configs = {c.pk: connection_config(c, timeout=timeout) for c in idle}
    try:
        results = brokers.run(_ask_all, configs, timeout)
    except brokers.BrokerError as exc:  # the bridge itself failed: say so on each
        results = {pk: Health(ok=False, error=str(exc)) for pk in configs}
    for connection in idle:
        connection_record_health(connection=connection, health=results[connection.pk], by=BEAT_CHECK)
        health = results[connection.pk]
        _written[connection.pk] = (time.monotonic(), health.ok, "" if health.ok else health.error)
    return len(idle)


async def _ask_all(configs: dict, timeout: float) -> dict[int, Health]:
    async def one(config) -> Health:
        try:
            async with brokers.get_adapter(config) as adapter:
                return await asyncio.wait_for(adapter.health(), timeout=timeout + 1)
        except Exception as exc:  # noqa: BLE001 - any failure is the answer
            return Health(ok=False, error=str(exc) or type(exc).__name__)

    answers = await asyncio.gather(*(one(c) for c in configs.values()))
    return dict(zip(configs, answers, strict=True))


def health_age_seconds(connection: Connection, *, now=None) -> float | None:
    """Seconds since the connection's health was last recorded (None: never)."""
    if connection.last_checked_at is None:
        return None
    return max(0.0, ((now or timezone.now()) - connection.last_checked_at).total_seconds())


def age_text(seconds: float | None) -> str:
    """ "12 s", "4 min", "3 h", "2 d" ("never" for None)."""
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"
