"""Roles and what each may do: one table, enforced by services, views, API and admin alike.

Roles are Django groups created by a migration: ``viewer`` (read; payloads masked), ``operator``
(redrive, discard, resolve, edit-and-redrive), ``admin`` (connections, sources, users, tokens,
masking rules). A superuser may do everything. A user in several groups gets the union.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)

VIEW = "view"
VIEW_UNMASKED = "view_unmasked"
REDRIVE = "redrive"
DISCARD = "discard"
RESOLVE = "resolve"
EDIT = "edit"
EXPORT = "export"
MANAGE_GROUPS = "manage_error_groups"
MANAGE_CONNECTIONS = "manage_connections"
HARVEST = "harvest"
MANAGE_TOKENS = "manage_tokens"
VIEW_AUDIT = "view_audit"
MANAGE_ALERTS = "manage_alerts"
MANAGE_MASKING = "manage_masking"

_OPERATOR_ACTIONS = {
    VIEW,
    VIEW_UNMASKED,
    REDRIVE,
    DISCARD,
    RESOLVE,
    EDIT,
    EXPORT,
    MANAGE_GROUPS,
    HARVEST,
    VIEW_AUDIT,
}
ACTIONS_BY_ROLE: dict[str, set[str]] = {
    VIEWER: {VIEW, EXPORT},
    OPERATOR: _OPERATOR_ACTIONS,
    ADMIN: _OPERATOR_ACTIONS | {MANAGE_CONNECTIONS, MANAGE_TOKENS, MANAGE_ALERTS, MANAGE_MASKING},
}


def roles_of(user) -> set[str]:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return set()
    cached = getattr(user, "_dlq_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user._dlq_roles = cached
    return cached


def can(user, action: str) -> bool:
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return any(action in ACTIONS_BY_ROLE[role] for role in roles_of(user))


def require(user, action: str) -> None:
    """Raise PermissionDenied unless ``user`` may do ``action`` (services call this).

    ``user=None`` is the system itself (CLI, scheduled policy): always allowed. Requests always
    pass ``request.user``, which is never None (AnonymousUser may do nothing).
    """
    if user is None:
        return
    if not can(user, action):
        raise PermissionDenied(f"your role does not allow: {action.replace('_', ' ')}")
