"""Alert rules and masking rules: validated, permission-checked, audited writes.

Admins manage both (``manage_alerts``, ``manage_masking``; ``actor=None`` is the system). The
Django admin and the API call these; nothing saves a rule itself.
"""

from __future__ import annotations

from django.db import transaction

from dlqadmin import permissions
from dlqadmin.models import AlertRule, MaskingRule
from dlqadmin.services.audit import audit_record, audited_delete

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


#: per rule model: the permission to change it, the fields a write may set, the audit prefix
_KINDS = {
    AlertRule: (permissions.MANAGE_ALERTS, ALERT_RULE_FIELDS, "alert_rule"),
    MaskingRule: (permissions.MANAGE_MASKING, MASKING_RULE_FIELDS, "masking_rule"),
}


def _save(*, actor, rule, values: dict, remote_addr, m2m=None):
    permission, fields, audit = _KINDS[type(rule)]
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


def _delete(*, actor, rule, remote_addr) -> None:
    permission, _fields, audit = _KINDS[type(rule)]
    permissions.require(actor, permission)
    audited_delete(
        rule, actor=actor, action=f"{audit}.delete", detail={"name": rule.name}, remote_addr=remote_addr
    )


def alert_rule_save(*, actor, rule: AlertRule | None = None, remote_addr=None, **values) -> AlertRule:
    """Create (``rule=None``) or change an alert rule. Raises ValidationError, PermissionDenied."""
    return _save(actor=actor, rule=rule or AlertRule(), values=values, remote_addr=remote_addr)


def alert_rule_delete(*, actor, rule: AlertRule, remote_addr=None) -> None:
    _delete(actor=actor, rule=rule, remote_addr=remote_addr)


def masking_rule_save(
    *, actor, rule: MaskingRule | None = None, sources=None, remote_addr=None, **values
) -> MaskingRule:
    """Create or change a masking rule (``sources``: limit it to these; None leaves them as they are)."""
    m2m = None if sources is None else {"sources": sources}
    return _save(actor=actor, rule=rule or MaskingRule(), values=values, remote_addr=remote_addr, m2m=m2m)


def masking_rule_delete(*, actor, rule: MaskingRule, remote_addr=None) -> None:
    _delete(actor=actor, rule=rule, remote_addr=remote_addr)
