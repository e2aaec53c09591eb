"""API authentication: ``Authorization: Token <key>`` for automation, the session for browsers.

Token authentication comes first in every view's list so that a request without credentials
gets 401 with ``WWW-Authenticate: Token`` (DRF takes the header from the first class).
"""

from __future__ import annotations

from rest_framework import authentication, exceptions

from dlqadmin.services.tokens import token_authenticate


class ApiTokenAuthentication(authentication.TokenAuthentication):
    """Keys from ``manage.py create_api_token`` or ``POST /api/v1/tokens/`` (stored hashed)."""

    keyword = "Token"

    def authenticate_credentials(self, key):
        token = token_authenticate(key)
        if token is None:
            raise exceptions.AuthenticationFailed("invalid, revoked or expired token")
        return token.user, token


#: the dashboard's login session second (DRF enforces CSRF on unsafe methods for it)
AUTHENTICATION_CLASSES = [ApiTokenAuthentication, authentication.SessionAuthentication]
