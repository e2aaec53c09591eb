"""Audit trail: every state-changing action writes one AuditEvent (append-only)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from dlqadmin.models import AuditEvent


def audit_record(
    *,
    actor=None,
    action: str,
    target: Any = None,
    count: int = 0,
    detail: dict | None = None,
    remote_addr: str | None = None,
) -> AuditEvent:
    """Record that ``actor`` (a user, or None for the system) did ``action`` to ``target``."""
    target_type = target_id = ""
    if target is not None:
        target_type = target._meta.model_name if hasattr(target, "_meta") else type(target).__name__.lower()
        target_id = str(getattr(target, "pk", target))
    actor_name = getattr(actor, "get_username", lambda: "")() if actor is not None else "system"
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=actor_name or "system",
        action=action,
        target_type=target_type,
        target_id=target_id[:64],
        count=count,
        detail=detail or {},
        remote_addr=remote_addr,
    )


def audited_delete(target, *, actor, action: str, detail: dict, remote_addr: str | None) -> None:
    """Record ``action`` on ``target`` and delete it, in one transaction (a delete that fails,
    e.g. ProtectedError, leaves no audit event)."""
    with transaction.atomic():
        audit_record(actor=actor, action=action, target=target, detail=detail, remote_addr=remote_addr)
        target.delete()
