"""Encryption at rest for broker credentials (Fernet, with key rotation).

``DLQADMIN_ENCRYPTION_KEY`` holds one or more Fernet keys, comma-separated, newest first. Values
are encrypted with the newest key and decrypted with any of them, so keys can be rotated by
prepending a new one and running ``manage.py rotate_encryption_key``.
"""

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """The stored value cannot be decrypted with the configured keys."""


@cache
def _keys(keys: str, secret_key: str) -> tuple[Fernet, ...]:
    if not keys:
        # DEBUG only (settings refuse to start without a key otherwise): derive from SECRET_KEY.
        derived = base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest())
        return (Fernet(derived),)
    try:
        return tuple(Fernet(k.strip().encode()) for k in keys.split(",") if k.strip())
    except ValueError as exc:
        raise ImproperlyConfigured(f"DLQADMIN_ENCRYPTION_KEY is not a valid Fernet key: {exc}") from None


@cache
def _fernet(keys: str, secret_key: str) -> MultiFernet:
    return MultiFernet(list(_keys(keys, secret_key)))


def fernet() -> MultiFernet:
    return _fernet(settings.DLQADMIN_ENCRYPTION_KEY, settings.SECRET_KEY)


def is_under_newest_key(token: str) -> bool:
    """Whether ``token`` was encrypted with the first (newest) key of DLQADMIN_ENCRYPTION_KEY."""
    try:
        _keys(settings.DLQADMIN_ENCRYPTION_KEY, settings.SECRET_KEY)[0].decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def reencrypt(token: str) -> str:
    """``token`` encrypted again under the newest key (decrypted with any configured key)."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("stored credential cannot be decrypted with DLQADMIN_ENCRYPTION_KEY") from None


def encrypt(plaintext: str) -> str:
    if plaintext == "":
        return ""
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    if token == "":
        return ""
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("stored credential cannot be decrypted with DLQADMIN_ENCRYPTION_KEY") from None


def generate_key() -> str:
    return Fernet.generate_key().decode()
