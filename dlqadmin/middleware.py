"""Security headers on every response: Content-Security-Policy (no inline script) and friends."""

from __future__ import annotations

from django.conf import settings


class SecurityHeadersMiddleware:
    """Adds ``Content-Security-Policy``, ``Referrer-Policy`` and ``Permissions-Policy``.

    The policy allows scripts only from our own origin, so a payload that slips past escaping
    still cannot run; websockets go to the same host.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.DLQADMIN_CSP)
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response
