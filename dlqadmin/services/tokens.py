"""API tokens: create (the raw key is shown once), authenticate, revoke.

A key is ``secrets.token_urlsafe(32)`` (256 random bits). Only its SHA-256 hash is stored, with
the first characters as a ``prefix`` so a person can recognise a token in a list. A leaked
database therefore leaks no usable key. Revoking keeps the row (for the audit trail).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from dlqadmin import permissions
from dlqadmin.models import ApiToken
from dlqadmin.services.audit import audit_record

PREFIX_LENGTH = 8
#: ``last_used_at`` is written at most this often per token (a busy script must not cost a
#: database write per request).
LAST_USED_RESOLUTION = timedelta(minutes=1)


def key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def token_create(*, user, name: str, actor=None, remote_addr: str | None = None) -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns ``(token, raw_key)``. The raw key is not stored and
    cannot be shown again. ``actor`` (default: ``user``) must be ``user`` or may manage tokens;
    ``actor=None`` with ``user`` given is the system (CLI). Raises PermissionDenied."""
    if actor is not None and actor.pk != user.pk:
        permissions.require(actor, permissions.MANAGE_TOKENS)
    raw_key = secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=(name or "").strip()[:100] or "api",
            prefix=raw_key[:PREFIX_LENGTH],
            key_hash=key_hash(raw_key),
        )
        audit_record(
            actor=actor,
            action="token.create",
            target=token,
            detail={"user": user.get_username(), "name": token.name, "prefix": token.prefix},
            remote_addr=remote_addr,
        )
    return token, raw_key


def token_revoke(*, token: ApiToken, actor=None, remote_addr: str | None = None) -> ApiToken:
    """Revoke ``token`` (idempotent: revoking twice keeps the first time). ``actor`` must own the
    token or may manage tokens; None is the system. Raises PermissionDenied."""
    if (
        actor is not None
        and actor.pk != token.user_id
        and not permissions.can(actor, permissions.MANAGE_TOKENS)
    ):
        raise PermissionDenied("only the owner or an admin may revoke this token")
    with transaction.atomic():
        changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if changed:
            audit_record(
                actor=actor,
                action="token.revoke",
                target=token,
                detail={"user_id": token.user_id, "name": token.name, "prefix": token.prefix},
                remote_addr=remote_addr,
            )
    token.refresh_from_db()
    return token


def token_authenticate(raw_key: str) -> ApiToken | None:
    """The active token whose key is ``raw_key`` (with its user loaded), or None when the key is
    unknown, revoked or its user is inactive. Records the use (at most once a minute)."""
    if not raw_key or len(raw_key) > 200:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=key_hash(raw_key), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        token.last_used_at = now
    return token
