"""Alerts: decide when a rule fires, record one delivery per rule and subject per window, deliver.

Triggers:
- a new error group appears (or a resolved one comes back): called by the harvest store;
- a redrive job ends with failures: called when a job finishes;
- a source's backlog, or its failures per window, crosses a threshold: ``alerts_evaluate``
  (Celery beat).

Masking: an alert leaves the product (a chat channel, a mailbox) for readers who hold no role, so
its error text (pattern, sample message, job error) is masked as for the most restricted viewer:
every enabled masking rule of the source applies (of every source for a redrive job), before the
delivery is stored or sent.

De-duplication: ``AlertDelivery`` is UNIQUE on (rule, dedup key, window start), so however many
times a trigger runs within a window, one alert goes out. Delivery is a Celery task with
retries; every attempt's outcome is stored on the delivery.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from dlqadmin.models import (
    AlertChannel,
    AlertDelivery,
    AlertDeliveryStatus,
    AlertKind,
    AlertRule,
    DeadLetter,
    ErrorGroup,
    RedriveJob,
    Source,
)
from dlqadmin.services.masking import Masker

log = logging.getLogger(__name__)
WEBHOOK_TIMEOUT = 10


class DeliveryError(Exception):
    """The channel refused or could not be reached (the task retries)."""


def _window_start(rule: AlertRule, now: datetime) -> datetime:
    size = max(1, rule.window_minutes) * 60
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % size, tz=now.tzinfo)


def alert_fire(
    *, rule: AlertRule, dedup_key: str, subject: str, payload: dict, now=None
) -> AlertDelivery | None:
    """Record and enqueue one alert; None when this rule already fired for ``dedup_key`` in this window."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            delivery = AlertDelivery.objects.create(
                rule=rule,
                dedup_key=dedup_key[:200],
                window_start=_window_start(rule, now),
                subject=subject[:300],
                payload=payload,
            )
    except IntegrityError:
        return None
    transaction.on_commit(lambda: _enqueue(delivery.pk))
    return delivery


def _enqueue(delivery_id: int) -> None:
    from dlqadmin.tasks import alert_deliver

    alert_deliver.delay(delivery_id)


def _rules(kind: str, source_id: int | None = None):
    rules = AlertRule.objects.filter(kind=kind, enabled=True)
    if source_id is not None:
        rules = rules.filter(Q(source__isnull=True) | Q(source_id=source_id))
    return rules


def _audience() -> Masker:
    """What an alert's readers may see: as little as the most restricted viewer (no role at all)."""
    return Masker(AnonymousUser())


def alerts_on_groups_appeared(*, groups: list[ErrorGroup]) -> int:
    fired = 0
    masker = _audience()
    for group in groups:
        for rule in _rules(AlertKind.NEW_ERROR_GROUP, group.source_id):
            source = Source.objects.filter(pk=group.source_id).values_list("name", flat=True).first()
            pattern = masker.text(group.source_id, group.message_pattern)
            subject = f"New failure in {source}: {group.error_class or group.reason} {pattern}"
            fired += bool(
                alert_fire(
                    rule=rule,
                    dedup_key=f"group:{group.pk}",
                    subject=subject,
                    payload={
                        "event": "new_error_group",
                        "source": source,
                        "group_id": group.pk,
                        "count": group.count,
                        "error_class": group.error_class,
                        "reason": group.reason,
                        "pattern": pattern,
                        "sample": masker.text(group.source_id, group.sample_message)[:500],
                        "first_seen": group.first_seen.isoformat(),
                    },
                )
            )
    return fired


def alerts_on_job_finished(*, job: RedriveJob) -> int:
    if not (job.failed or job.status == "failed"):
        return 0
    fired = 0
    for rule in _rules(AlertKind.JOB_FAILED):
        subject = f"Redrive job #{job.pk} {job.status}: {job.failed} of {job.total} failed"
        fired += bool(
            alert_fire(
                rule=rule,
                dedup_key=f"job:{job.pk}",
                subject=subject,
                payload={
                    "event": "job_failed",
                    "job_id": job.pk,
                    "status": job.status,
                    "total": job.total,
                    "succeeded": job.succeeded,
                    "failed": job.failed,
                    "skipped": job.skipped,
                    "error": _audience().text(None, job.error),
                },
            )
        )
    return fired


def alerts_evaluate(*, now=None) -> int:
    """Threshold rules (backlog, failures per window); run periodically."""
    now = now or timezone.now()
    fired = 0
    for rule, dedup_key, subject, payload in _breaches(now):
        fired += bool(alert_fire(rule=rule, dedup_key=dedup_key, now=now, subject=subject, payload=payload))
    return fired


def _breaches(now):
    """(rule, dedup key, subject, payload) of each threshold an enabled rule sees crossed."""
    for rule in AlertRule.objects.filter(enabled=True, kind=AlertKind.BACKLOG):
        sources = Source.objects.filter(enabled=True, backlog__gte=max(1, rule.threshold))
        if rule.source_id:
            sources = sources.filter(pk=rule.source_id)
        for source in sources:
            yield (
                rule,
                f"backlog:{source.pk}",
                f"Backlog of {source.name} is {source.backlog} (>= {rule.threshold})",
                {
                    "event": "backlog",
                    "source": source.name,
                    "backlog": source.backlog,
                    "threshold": rule.threshold,
                },
            )
    for rule in AlertRule.objects.filter(enabled=True, kind=AlertKind.FAILURE_RATE):
        since = now - timedelta(minutes=max(1, rule.window_minutes))
        counts = DeadLetter.objects.filter(failed_at__gte=since)
        if rule.source_id:
            counts = counts.filter(source_id=rule.source_id)
        for row in counts.order_by().values("source_id", "source__name").annotate(n=Count("id")):
            if row["n"] >= max(1, rule.threshold):
                yield (
                    rule,
                    f"rate:{row['source_id']}",
                    f"{row['n']} failures in {row['source__name']} in {rule.window_minutes} min",
                    {
                        "event": "failure_rate",
                        "source": row["source__name"],
                        "count": row["n"],
                        "window_minutes": rule.window_minutes,
                        "threshold": rule.threshold,
                    },
                )


def _body(delivery: AlertDelivery) -> bytes:
    if delivery.rule.slack_format:
        details = ", ".join(f"{k}: {v}" for k, v in delivery.payload.items() if k != "event")
        return json.dumps({"text": f"*dlqadmin* {delivery.subject}\n{details}"}).encode()
    return json.dumps({"subject": delivery.subject, "rule": delivery.rule.name, **delivery.payload}).encode()


def alert_deliver(*, delivery: AlertDelivery) -> None:
    """Send one alert; records the outcome. Raises DeliveryError so the task can retry."""
    rule = delivery.rule
    AlertDelivery.objects.filter(pk=delivery.pk).update(attempts=delivery.attempts + 1)
    try:
        if rule.channel == AlertChannel.WEBHOOK:
            request = urllib.request.Request(  # noqa: S310 - AlertRule.clean allows http(s) only
                rule.target,
                data=_body(delivery),
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "dlqadmin-alerts"},
            )
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:  # noqa: S310 - http(s) only
                if response.status >= 300:
                    raise DeliveryError(f"webhook answered HTTP {response.status}")
        else:
            recipients = [a.strip() for a in rule.target.split(",") if a.strip()]
            body = json.dumps(delivery.payload, indent=2, default=str)
            send_mail(f"[dlqadmin] {delivery.subject}", body, settings.DEFAULT_FROM_EMAIL, recipients)
    except (urllib.error.URLError, OSError, DeliveryError) as exc:
        reason = str(getattr(exc, "reason", None) or exc)
        AlertDelivery.objects.filter(pk=delivery.pk).update(
            status=AlertDeliveryStatus.FAILED, error=reason[:1000]
        )
        raise DeliveryError(reason) from exc
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        status=AlertDeliveryStatus.SENT, error="", sent_at=timezone.now()
    )
