"""The one place that publishes live events to the Channels layer.

Groups: ``jobs`` (every job's progress), ``job-<id>`` (one job), ``dead-letters`` (new
failures). Live updates are best-effort: a failure to publish is logged, never raised, so a
harvest or a redrive job never fails because a dashboard is not listening.
"""

from __future__ import annotations

import logging

from channels.layers import get_channel_layer

import brokers

log = logging.getLogger(__name__)


def _send(group: str, event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        brokers.run(layer.group_send, group, event)
    except Exception:  # noqa: BLE001 - best effort by design
        log.warning("live event to %s not delivered", group, exc_info=True)


def job_payload(job) -> dict:
    done = job.succeeded + job.failed + job.skipped
    return {
        "id": job.pk,
        "status": job.status,
        "total": job.total,
        "succeeded": job.succeeded,
        "failed": job.failed,
        "skipped": job.skipped,
        "done": done,
        "percent": round(100 * done / job.total, 1) if job.total else 100.0,
        "claiming": job.claiming,
    }


def job_progress(job) -> None:
    event = {"type": "job.progress", "job": job_payload(job)}
    _send("jobs", event)
    _send(f"job-{job.pk}", event)


def dead_letters_arrived(*, source_id: int, count: int) -> None:
    if count:
        _send("dead-letters", {"type": "dead_letters.new", "source": source_id, "count": count})
