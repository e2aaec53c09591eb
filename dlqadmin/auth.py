"""Sign-in throttling: too many failed sign-ins for a username or from an address lock it out.

The authentication backend refuses to check passwords while a lockout is active (so a password
guesser learns nothing, even when it finally guesses right), and failures are counted from
Django's ``user_login_failed`` signal, for the web sign-in, the admin and the API alike.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver

from dlqadmin.proxies import client_ip


def _client_ip(request) -> str:
    """The client's address (behind trusted proxies, from X-Forwarded-For: dlqadmin/proxies.py)."""
    return (client_ip(request) or "unknown") if request is not None else "unknown"


def _keys(request, username: str | None) -> list[str]:
    keys = [f"dlq-login-fail:ip:{_client_ip(request)}"]
    if username:
        keys.append(f"dlq-login-fail:user:{username.lower()[:150]}")
    return keys


def locked_out(request, username: str | None) -> bool:
    limit = settings.DLQADMIN_LOGIN_MAX_FAILURES
    return any((cache.get(key) or 0) >= limit for key in _keys(request, username))


def record_failure(request, username: str | None) -> None:
    window = settings.DLQADMIN_LOGIN_LOCKOUT_SECONDS
    for key in _keys(request, username):
        if cache.add(key, 1, timeout=window):
            continue
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window)


class ThrottledModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if locked_out(request, username):
            raise PermissionDenied("too many failed sign-ins; try again later")
        return super().authenticate(request, username=username, password=password, **kwargs)


@receiver(user_login_failed)
def _count_failure(sender, credentials, request=None, **kwargs):
    record_failure(request, credentials.get("username"))
