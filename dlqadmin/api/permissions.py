"""Role permissions for the API: the same table as the UI (:mod:`dlqadmin.permissions`).

A view declares ``role_actions = {"<viewset action>": <dlqadmin.permissions action>}``. Reads
not listed need ``view``; writes not listed are refused (fail closed). Unauthenticated requests
get 401 (DRF raises NotAuthenticated when no authenticator succeeded), a role that does not allow
the action gets 403 with the action named. Services check again (defence in depth).
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from dlqadmin import permissions as roles
from dlqadmin.proxies import client_ip


class RolePermission(BasePermission):
    message = "your role does not allow this"

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        action = getattr(view, "action", None)
        if action is None and not hasattr(view, "role_actions_by_method"):
            return True  # DRF answers 405 for an unsupported method
        required = required_action(view, request)
        if required is None:
            self.message = "this operation is not allowed"
            return False
        if not roles.can(user, required):
            self.message = f"your role does not allow: {required.replace('_', ' ')}"
            return False
        return True


def required_action(view, request) -> str | None:
    by_method = getattr(view, "role_actions_by_method", None)
    if by_method is not None:
        found = by_method.get(request.method)
        if found is not None:
            return found
    found = getattr(view, "role_actions", {}).get(getattr(view, "action", None))
    if found is not None:
        return found
    return roles.VIEW if request.method in SAFE_METHODS else None


# ---- throttling ------------------------------------------------------------------------------
#: defaults when settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] does not name the scope
DEFAULT_RATES = {"dlq-user": "600/min", "dlq-anon": "30/min"}


def _rate(scope: str) -> str | None:
    configured = (getattr(settings, "REST_FRAMEWORK", {}) or {}).get("DEFAULT_THROTTLE_RATES") or {}
    return configured.get(scope, DEFAULT_RATES.get(scope))


class _ClientIdent:
    """Anonymous requests are counted per client address (behind trusted proxies, from
    X-Forwarded-For: dlqadmin/proxies.py), never per a header any client can write."""

    def get_ident(self, request):
        return client_ip(request) or "unknown"


class UserThrottle(_ClientIdent, UserRateThrottle):
    """Per user (token or session): 600 requests a minute unless configured."""

    scope = "dlq-user"

    def get_rate(self):
        return _rate(self.scope)

    def allow_request(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return True  # AnonThrottle's job
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)


class AnonThrottle(_ClientIdent, AnonRateThrottle):
    """Per client address for unauthenticated requests: 30 a minute unless configured."""

    scope = "dlq-anon"

    def get_rate(self):
        return _rate(self.scope)

    def allow_request(self, request, view):
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)


THROTTLE_CLASSES = [UserThrottle, AnonThrottle]
