"""Parsing of untrusted scalar input shared by the filter language, the API filters, the
dashboard views and the CLI: each raises ``ValueError`` with a message for a person, so every
caller answers bad input with a 400 / form error / CommandError instead of letting it reach
PostgreSQL (which rejects what Python accepts: offsets beyond +-15:59, bigint overflow).

Below them, model-level validators (``validate_*``, raising Django's ``ValidationError``) that
the models' ``clean()`` runs, so forms, the API and the admin give the same answer. This module
imports nothing of dlqadmin: models build on it (docs/architecture.md, "Package map").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.dateparse import parse_datetime

MAX_BIGINT = 2**63 - 1
_INTEGER = re.compile(r"-?[0-9]+")


def parse_instant(raw) -> datetime:
    """An ISO-8601 date/time as an aware datetime in UTC (naive input is taken as UTC).

    Any offset Python accepts is fine (it is converted here, so PostgreSQL never sees it); a time
    that leaves Python's calendar once converted (0001-01-01T00:00+01:00) is out of range."""
    text = str(raw).strip()
    try:
        value = parse_datetime(text) or datetime.fromisoformat(text)
    except (ValueError, TypeError):
        raise ValueError(f"{text!r} is not an ISO-8601 date/time") from None
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is out of range (years 1 to 9999 in UTC)") from None


def control_character(text: str) -> str | None:
    """The first control character (C0, DEL, C1) in ``text``, shown escaped, or None. A URL or a
    name with one cannot be shown, logged or sent in an HTTP header as it is."""
    for char in text:
        if ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
            return repr(char)[1:-1]
    return None


def is_integer_text(text: str) -> bool:
    """ASCII digits with an optional leading minus: what ``int()`` must accept (``str.isdigit``
    is also true for "²" and other Unicode digits ``int()`` refuses)."""
    return bool(_INTEGER.fullmatch(text))


def parse_id(raw, *, name: str = "id") -> int:
    """A positive database id (bigint): ASCII digits, 1 to 2**63-1."""
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or not 1 <= int(text) <= MAX_BIGINT:
        raise ValueError(f"{name} must be an integer id from 1 to {MAX_BIGINT}")
    return int(text)


def is_id(raw) -> bool:
    """Whether ``raw`` is a database id as ``parse_id`` reads it (a reference by id, not by name)."""
    try:
        parse_id(raw)
    except ValueError:
        return False
    return True


def find_nul(value, path: str = "") -> str | None:
    """The path of the first string (or key) containing NUL, which PostgreSQL cannot store."""
    if isinstance(value, str):
        return path or "value" if "\x00" in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return where
            found = find_nul(item, where)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = find_nul(item, f"{path}.{i}" if path else str(i))
            if found:
                return found
    return None


def validate_webhook_url(value: str) -> None:
    """An http:// or https:// URL: the only schemes the webhook sender opens."""
    if not value.startswith(("http://", "https://")):
        raise ValidationError("a webhook target must be an http:// or https:// URL")


def validate_email_list(value: str) -> None:
    """Comma-separated email addresses, at least one."""
    addresses = [a.strip() for a in value.split(",") if a.strip()]
    if not addresses:
        raise ValidationError("give at least one email address")
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(f"{address!r} is not a valid email address") from None


def registry_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a Schema Registry base URL (None when it can, or is empty)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "a Schema Registry URL is http://host:port or https://host:port"
    if parts.username or parts.password:
        return "put the registry's credentials in schema_registry_username / _secret, not in the URL"
    if control_character(url):
        return "the URL contains a control character"
    return None
