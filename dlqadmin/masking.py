"""Masking, the pure part: what a rule hides of a payload, headers, a key, broker properties or
error text, and whether a user is masked at all. No database access and no model import, so the
models (``MaskingRule.clean`` runs ``validate_rule``), the selectors (search never matches masked
text) and the services (``dlqadmin.services.masking``: the rules per source, ``Masker``, what one
user sees of one message) all build on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

from django.core.exceptions import ValidationError
from django.db.models import TextChoices

from brokers import headers as header_codec
from dlqadmin import permissions


class MaskingKind(TextChoices):
    JSON_PATH = "json_path", "JSON path (JSON payloads)"
    REGEX = "regex", "Regular expression (text payloads and error text)"
    HEADER = "header", "Header name"


class Rule(Protocol):
    """What the functions here read of a rule (``dlqadmin.models.MaskingRule`` is one)."""

    kind: str
    pattern: str
    replacement: str


MAX_JSON_DEPTH = 200


def masked_for(user) -> bool:
    return not permissions.can(user, permissions.VIEW_UNMASKED)


def validate_rule(kind: str, pattern: str) -> None:
    if not pattern.strip():
        raise ValidationError({"pattern": "the pattern is empty"})
    if kind == MaskingKind.REGEX:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValidationError({"pattern": f"not a valid regular expression: {exc}"}) from None
    if kind == MaskingKind.JSON_PATH and (not path_parts(pattern) or any(not p for p in path_parts(pattern))):
        raise ValidationError({"pattern": "a JSON path is dotted keys, e.g. customer.email or **.password"})


def path_parts(pattern: str) -> list[str]:
    """The keys of a JSON path rule; a leading ``$`` (``$.card.number``) names the root."""
    parts = pattern.split(".")
    return parts[1:] if parts[:1] == ["$"] else parts


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def _mask_path(value, parts: list[str], replacement: str, depth: int = 0):
    if depth > MAX_JSON_DEPTH or not parts:
        return value
    head, rest = parts[0], parts[1:]
    if head == "**":
        value = _mask_path(value, rest, replacement, depth + 1)
        if isinstance(value, dict):
            children = list(value.items())
        elif isinstance(value, list):
            children = list(enumerate(value))
        else:
            children = []
        for key, child in children:
            value[key] = _mask_path(child, parts, replacement, depth + 1)
        return value
    if isinstance(value, dict):
        keys = list(value) if head == "*" else [head] if head in value else []
        for key in keys:
            value[key] = replacement if not rest else _mask_path(value[key], rest, replacement, depth + 1)
    elif isinstance(value, list):
        if head == "*":
            indexes = range(len(value))
        else:
            indexes = [int(head)] if head.isdigit() and int(head) < len(value) else []
        for i in indexes:
            value[i] = replacement if not rest else _mask_path(value[i], rest, replacement, depth + 1)
    return value


def mask_text(text: str, rules: Sequence[Rule]) -> str:
    for rule in rules:
        if rule.kind == MaskingKind.REGEX:
            text = _regex(rule.pattern).sub(rule.replacement, text)
    return text


def mask_payload(payload: bytes, rules: Sequence[Rule]) -> bytes:
    """The payload as a masked user sees it. JSON paths apply to JSON; regexes to the text."""
    if not rules:
        return payload
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        # binary: regexes cannot be applied safely; hide it entirely when any text rule exists
        if any(r.kind == MaskingKind.REGEX for r in rules):
            return b"[binary payload hidden by masking rules]"
        return payload
    paths = [r for r in rules if r.kind == MaskingKind.JSON_PATH]
    if paths:
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            document = None
        if document is not None:
            for rule in paths:
                document = _mask_path(document, path_parts(rule.pattern), rule.replacement)
            text = json.dumps(document, ensure_ascii=False)
    return mask_text(text, rules).encode("utf-8")


#: what a decoded value becomes when a regex rule leaves text that is no longer JSON
HIDDEN_VALUE = "[decoded payload hidden by masking rules]"


def mask_value(value, rules: Sequence[Rule]):
    """A decoded payload (JSON-compatible data, see ``dlqadmin.decoding``) as a masked user sees
    it: JSON paths apply to the value, regexes to its JSON text, as for a JSON payload."""
    if not rules:
        return value
    try:
        document = json.loads(json.dumps(value))  # a copy: the caller's value is not changed
    except (ValueError, RecursionError):
        return HIDDEN_VALUE
    for rule in rules:
        if rule.kind == MaskingKind.JSON_PATH:
            document = _mask_path(document, path_parts(rule.pattern), rule.replacement)
    if not any(r.kind == MaskingKind.REGEX for r in rules):
        return document
    text = json.dumps(document, ensure_ascii=False)
    masked = mask_text(text, rules)
    if masked == text:
        return document
    try:
        return json.loads(masked)
    except (ValueError, RecursionError):
        return HIDDEN_VALUE


def mask_headers(headers: list, rules: Sequence[Rule]) -> list:
    names = {r.pattern.lower(): r.replacement for r in rules if r.kind == MaskingKind.HEADER}
    regexes = [r for r in rules if r.kind == MaskingKind.REGEX]
    out = []
    for name, node in headers:
        if name.lower() in names:
            out.append([name, {"t": "str", "v": names[name.lower()]}])
        elif regexes and node.get("t") in ("str", "bytes"):
            text = header_codec.node_text(node)
            masked = mask_text(text, regexes)
            out.append([name, node if masked == text else {"t": "str", "v": masked}])
        else:
            out.append([name, node])
    return out


def mask_key(key: bytes | None, rules: Sequence[Rule]) -> bytes | None:
    """A record key (Kafka) as a masked user sees it: regexes apply to its text; a binary key is
    hidden entirely when any text rule exists (as a binary payload is)."""
    regexes = [r for r in rules if r.kind == MaskingKind.REGEX]
    if key is None or not regexes:
        return key
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return b"[binary key hidden by masking rules]"
    return mask_text(text, regexes).encode("utf-8")


def mask_properties(properties: dict, rules: Sequence[Rule]) -> dict:
    """Broker properties (correlation id, user id, app id ...) as a masked user sees them: a
    header rule naming a property replaces its value; regexes apply to every text value."""
    names = {r.pattern.lower(): r.replacement for r in rules if r.kind == MaskingKind.HEADER}
    regexes = [r for r in rules if r.kind == MaskingKind.REGEX]

    def masked(value, depth: int = 0):
        if depth > MAX_JSON_DEPTH:
            return value
        if isinstance(value, str):
            return mask_text(value, regexes) if regexes else value
        if isinstance(value, dict):
            return {
                k: names[str(k).lower()] if str(k).lower() in names else masked(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [masked(v, depth + 1) for v in value]
        return value

    return masked(properties or {})
