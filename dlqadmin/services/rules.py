"""Alert rules and masking rules: validated, permission-checked, audited writes.

Admins manage both (``manage_alerts``, ``manage_masking``; ``actor=None`` is the system). The
Django admin and the API call these; nothing saves a rule itself.
"""

from __future__ import annotations

from django.db import transaction

from dlqadmin import permissions
from dlqadmin.models import AlertRule, MaskingRule
from dlqadmin.services.audit import audit_record

ALERT_RULE_FIELDS = (
    "name",
    "kind",
    "source",
    "threshold",
    "window_minutes",
    "channel",
    "target",
    "slack_format",
    "enabled",
)
MASKING_RULE_FIELDS = ("name", "kind", "pattern", "replacement", "enabled")


def _save(*, actor, permission: str, rule, values: dict, fields: tuple, audit: str, remote_addr, m2m=None):
    permissions.require(actor, permission)
    creating = rule.pk is None
    changed = sorted(k for k in values if k in fields and getattr(rule, k, None) != values[k])
    for key, value in values.items():
        if key in fields:
            setattr(rule, key, value)
    rule.full_clean()
    with transaction.atomic():
        rule.save()
        if m2m is not None:
            for name, items in m2m.items():
                getattr(rule, name).set(items)
                changed.append(name)
        audit_record(
            actor=actor,
            action=f"{audit}.{'create' if creating else 'update'}",
            target=rule,
            detail={"name": rule.name, "changed": changed},
            remote_addr=remote_addr,
        )
    return rule


def _delete(*, actor, permission: str, rule, audit: str, remote_addr) -> None:
    permissions.require(actor, permission)
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=f"{audit}.delete",
            target=rule,
            detail={"name": rule.name},
            remote_addr=remote_addr,
        )
        rule.delete()


def alert_rule_save(*, actor, rule: AlertRule | None = None, remote_addr=None, **values) -> AlertRule:
    """Create (``rule=None``) or change an alert rule. Raises ValidationError, PermissionDenied."""
    return _save(
        actor=actor,
        permission=permissions.MANAGE_ALERTS,
        rule=rule or AlertRule(),
        values=values,
        fields=ALERT_RULE_FIELDS,
        audit="alert_rule",
        remote_addr=remote_addr,
    )


def alert_rule_delete(*, actor, rule: AlertRule, remote_addr=None) -> None:
    _delete(
        actor=actor,
        permission=permissions.MANAGE_ALERTS,
        rule=rule,
        audit="alert_rule",
        remote_addr=remote_addr,
    )


def masking_rule_save(
    *, actor, rule: MaskingRule | None = None, sources=None, remote_addr=None, **values
) -> MaskingRule:
    """Create or change a masking rule (``sources``: limit it to these; None leaves them as they are)."""
    return _save(
        actor=actor,
        permission=permissions.MANAGE_MASKING,
        rule=rule or MaskingRule(),
        values=values,
        fields=MASKING_RULE_FIELDS,
        audit="masking_rule",
        remote_addr=remote_addr,
        m2m=None if sources is None else {"sources": sources},
    )


def masking_rule_delete(*, actor, rule: MaskingRule, remote_addr=None) -> None:
    _delete(
        actor=actor,
        permission=permissions.MANAGE_MASKING,
        rule=rule,
        audit="masking_rule",
        remote_addr=remote_addr,
    )
