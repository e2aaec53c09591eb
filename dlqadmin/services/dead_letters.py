"""Operations on dead letters other than redrive: discard, resolve, edit, error-group lifecycle.

Each takes the acting user, checks the role (dlqadmin/permissions.py), changes rows in bulk
(one UPDATE per chunk, never a per-row loop in the request) and writes one AuditEvent.

Visibility: a user acts only on messages of sources they may see (per-source restrictions,
``dlqadmin.selectors.visible_sources``). Bulk selections silently leave other messages out;
a single message or error group of an invisible source is refused with PermissionDenied.
``actor=None`` is the system (CLI, policies): everything.
"""

from __future__ import annotations

import json

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from brokers import headers as header_codec
from dlqadmin import permissions
from dlqadmin.decoding.chain import decode
from dlqadmin.models import (
    DeadLetter,
    DeadLetterRevision,
    DeadLetterState,
    DeadLetterStatus,
    ErrorGroup,
    ErrorGroupStatus,
)
from dlqadmin.selectors import DeadLetterFilter, dead_letters_for, source_visible
from dlqadmin.services.audit import audit_record

#: statuses an operator may move a message out of with discard/resolve (not while queued)
SETTLEABLE = [s for s in DeadLetterStatus.values if s != DeadLetterStatus.QUEUED]


class EditError(ValueError):
    """An edit that cannot be accepted (e.g. invalid JSON for a JSON message)."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def selection_for(*, actor, ids: list[int] | None, filters: DeadLetterFilter | None):
    """The messages ``actor`` selected: of the given ids or filter, only those they may see.
    Every bulk action selects with it (discard, resolve, archive, and redrive's plan and claim).
    Raises ValueError when neither ids nor a filter is given."""
    if ids is not None:
        return dead_letters_for(actor).filter(pk__in=[int(i) for i in ids])
    if filters is None:
        raise ValueError("give ids or a filter")
    return dead_letters_for(actor, filters)


def _require_visible(actor, source_id: int | None, what: str) -> None:
    if not source_visible(actor, source_id):
        raise PermissionDenied(f"this {what} belongs to a source you may not see")


#: the permission each settled status needs
_SETTLE_PERMISSION = {
    DeadLetterStatus.DISCARDED: permissions.DISCARD,
    DeadLetterStatus.RESOLVED: permissions.RESOLVE,
    DeadLetterStatus.ARCHIVED: permissions.RESOLVE,
}


def _settle(status: str, *, actor, ids, filters, remote_addr) -> int:
    permissions.require(actor, _SETTLE_PERMISSION[status])
    selection = selection_for(actor=actor, ids=ids, filters=filters)
    selection = selection.filter(status__in=SETTLEABLE).exclude(status=status)
    with transaction.atomic():
        count = DeadLetterState.objects.filter(pk__in=selection.values("pk")).update(status=status)
        audit_record(
            actor=actor,
            action=f"messages.{status}",
            count=count,
            remote_addr=remote_addr,
            detail={"filter": filters.to_dict() if filters else {}, "ids": list(ids or [])[:100]},
        )
    return count


def dead_letters_discard(*, actor, ids=None, filters=None, remote_addr=None) -> int:
    """Mark messages discarded (kept, never redriven by a filter job unless chosen). Returns count."""
    return _settle(DeadLetterStatus.DISCARDED, actor=actor, ids=ids, filters=filters, remote_addr=remote_addr)


def dead_letters_resolve(*, actor, ids=None, filters=None, remote_addr=None) -> int:
    """Mark messages resolved (fixed by other means). Returns count."""
    return _settle(DeadLetterStatus.RESOLVED, actor=actor, ids=ids, filters=filters, remote_addr=remote_addr)


def dead_letters_archive(*, actor, ids=None, filters=None, remote_addr=None) -> int:
    """Mark messages archived (kept for reference, out of the working views). Returns count."""
    return _settle(DeadLetterStatus.ARCHIVED, actor=actor, ids=ids, filters=filters, remote_addr=remote_addr)


def is_json_payload(letter: DeadLetter) -> bool:
    content_type = str((letter.properties or {}).get("content_type") or "")
    if "json" in content_type:
        return True
    try:
        json.loads(bytes(letter.payload))
        return True
    except ValueError:
        return False


def dead_letter_revise(
    *,
    actor,
    dead_letter: DeadLetter,
    payload: bytes,
    headers: list | None = None,
    note: str = "",
    remote_addr: str | None = None,
) -> DeadLetterRevision:
    """Store an edited copy of a message; the original row stays untouched.

    ``headers`` uses the stored encoding (``[[name, node], ...]``); None keeps the current ones.
    A message whose original payload is JSON must stay valid JSON. Raises EditError;
    PermissionDenied unless ``actor`` may edit, see unmasked content and see the message's source.
    """
    permissions.require(actor, permissions.EDIT)
    permissions.require(actor, permissions.VIEW_UNMASKED)  # an edit starts from the original
    _require_visible(actor, dead_letter.source_id, "message")
    errors: dict[str, str] = {}
    if is_json_payload(dead_letter):
        try:
            json.loads(payload)
        except ValueError as exc:
            # a compressed JSON body (gzip of JSON ...) stays JSON when it decodes to JSON
            found = decode(payload)
            if not (found.compressions and found.format == "json"):
                errors["payload"] = f"the message is JSON and the edit is not valid JSON: {exc}"
    if headers is not None:
        try:
            for name, node in headers:
                if not isinstance(name, str):
                    raise ValueError("header names must be strings")
                header_codec.decode_value(node)
        except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as exc:
            errors["headers"] = f"headers must be [[name, {{t, v}}], ...]: {exc}"
    if errors:
        raise EditError(errors)
    latest = dead_letter.revisions.first()
    base_headers = latest.headers if latest else dead_letter.headers
    with transaction.atomic():
        revision = DeadLetterRevision.objects.create(
            dead_letter=dead_letter,
            payload=payload,
            key=dead_letter.key,
            headers=base_headers if headers is None else headers,
            note=note[:500],
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        audit_record(
            actor=actor,
            action="messages.edit",
            target=dead_letter,
            count=1,
            detail={"revision": revision.pk, "note": note[:200]},
            remote_addr=remote_addr,
        )
    return revision


def error_group_set_status(
    *, actor, group: ErrorGroup, status: str, remote_addr: str | None = None
) -> ErrorGroup:
    """Move a group through its lifecycle: open, acknowledged, resolved, ignored.

    Raises EditError (unknown status); PermissionDenied (role, or a group of an invisible source)."""
    permissions.require(actor, permissions.MANAGE_GROUPS)
    _require_visible(actor, group.source_id, "error group")
    if status not in ErrorGroupStatus.values:
        raise EditError(
            {"status": f"unknown status {status!r}; use one of {', '.join(ErrorGroupStatus.values)}"}
        )
    with transaction.atomic():
        ErrorGroup.objects.filter(pk=group.pk).update(status=status, status_changed_at=timezone.now())
        audit_record(
            actor=actor,
            action=f"error_group.{status}",
            target=group,
            count=group.count,
            remote_addr=remote_addr,
        )
    group.refresh_from_db()
    return group


def error_group_set_auto_retry(
    *, actor, group: ErrorGroup, auto_retry: bool | None, remote_addr: str | None = None
) -> ErrorGroup:
    """Override the source's automatic retry for one group: True (retry it even when the source
    does not), False (never), None (inherit the source's setting). Audited.

    Raises EditError (not a bool or None); PermissionDenied (role, or a group of an invisible
    source)."""
    permissions.require(actor, permissions.MANAGE_GROUPS)
    _require_visible(actor, group.source_id, "error group")
    if auto_retry is not None and not isinstance(auto_retry, bool):
        raise EditError({"auto_retry": "auto_retry must be true, false or null (inherit the source's)"})
    with transaction.atomic():
        before = ErrorGroup.objects.filter(pk=group.pk).values_list("auto_retry", flat=True).first()
        ErrorGroup.objects.filter(pk=group.pk).update(auto_retry=auto_retry)
        audit_record(
            actor=actor,
            action="error_group.update",
            target=group,
            detail={"auto_retry": auto_retry, "before": before},
            remote_addr=remote_addr,
        )
    group.refresh_from_db()
    return group
