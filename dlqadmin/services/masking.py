"""Masking: hide sensitive parts of payloads, headers and error text from users who may not see them.

``masked_for(user)`` says whether masking applies (viewers; anyone without the unmasked-view
permission). ``MaskedMessage.of(letter, rules)`` gives the payload, headers, key, broker properties and error
text as that user may see them; a :class:`Masker` does it for one user over many messages (one request, one
export), looking the rules up once per source. Masked values are replaced on the server: the
originals never leave it for such users (UI, API, admin and exports all go through here). Search
cannot probe them either: ``dlqadmin.selectors.dead_letters_for`` matches only unmasked text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache

from django.core.exceptions import ValidationError
from django.db.models import Q

from brokers import headers as header_codec
from dlqadmin import permissions
from dlqadmin.models import DeadLetter, MaskingKind, MaskingRule

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
    if kind == MaskingKind.JSON_PATH and any(not part for part in pattern.split(".")):
        raise ValidationError({"pattern": "a JSON path is dotted keys, e.g. customer.email or **.password"})


def rules_for(source_id: int | None) -> list[MaskingRule]:
    """Enabled rules for ``source_id`` (None, a row tied to no source: every enabled rule)."""
    if source_id is None:
        return list(MaskingRule.objects.filter(enabled=True))
    return list(
        MaskingRule.objects.filter(enabled=True)
        .filter(Q(sources__isnull=True) | Q(sources__id=source_id))
        .distinct()
    )


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


def mask_text(text: str, rules: list[MaskingRule]) -> str:
    for rule in rules:
        if rule.kind == MaskingKind.REGEX:
            text = _regex(rule.pattern).sub(rule.replacement, text)
    return text


def mask_payload(payload: bytes, rules: list[MaskingRule]) -> bytes:
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
                document = _mask_path(document, rule.pattern.split("."), rule.replacement)
            text = json.dumps(document, ensure_ascii=False)
    return mask_text(text, rules).encode("utf-8")


def mask_headers(headers: list, rules: list[MaskingRule]) -> list:
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


def mask_key(key: bytes | None, rules: list[MaskingRule]) -> bytes | None:
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


def mask_properties(properties: dict, rules: list[MaskingRule]) -> dict:
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


@dataclass
class MaskedMessage:
    payload: bytes
    headers: list
    error_message: str
    stacktrace: str
    masked: bool
    key: bytes | None = None
    properties: dict | None = None
    read_notes: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        letter: DeadLetter,
        rules: list[MaskingRule] | None,
        *,
        payload: bytes | None = None,
        headers: list | None = None,
    ) -> MaskedMessage:
        """``rules=None`` means unmasked (the user may see everything)."""
        raw_payload = bytes(letter.payload) if payload is None else payload
        raw_headers = letter.headers if headers is None else headers
        raw_key = bytes(letter.key) if letter.key is not None else None
        raw_properties = letter.properties or {}
        notes = list(letter.read_notes or [])
        if rules is None:
            return cls(
                raw_payload,
                raw_headers,
                letter.error_message,
                letter.stacktrace,
                False,
                raw_key,
                raw_properties,
                notes,
            )
        return cls(
            mask_payload(raw_payload, rules),
            mask_headers(raw_headers or [], rules),
            mask_text(letter.error_message, rules),
            mask_text(letter.stacktrace, rules),
            bool(rules),
            mask_key(raw_key, rules),
            mask_properties(raw_properties, rules),
            [mask_text(note, rules) for note in notes],
        )


class Masker:
    """What one user may see, with the rules looked up once per source.

    ``user=None`` is the system (CLI export, policies): nothing is masked. Any other user,
    including an anonymous one, is masked unless their role may see unmasked values."""

    def __init__(self, user):
        self.active = user is not None and masked_for(user)
        self._rules: dict[int | None, list[MaskingRule]] = {}

    def rules(self, source_id: int | None) -> list[MaskingRule] | None:
        """The rules for ``source_id`` (empty: nothing to hide there), or None when unmasked."""
        if not self.active:
            return None
        if source_id not in self._rules:
            self._rules[source_id] = rules_for(source_id)
        return self._rules[source_id]

    def hides(self, source_id: int | None) -> bool:
        """Whether any rule may change what this user sees of ``source_id``'s messages."""
        return bool(self.rules(source_id))

    def message(self, letter: DeadLetter, *, payload: bytes | None = None, headers=None) -> MaskedMessage:
        """``letter`` (or a revision's ``payload`` / ``headers``) as this user may see it."""
        return MaskedMessage.of(letter, self.rules(letter.source_id), payload=payload, headers=headers)

    def payload(self, source_id: int | None, payload: bytes) -> bytes:
        rules = self.rules(source_id)
        return mask_payload(payload, rules) if rules else payload

    def text(self, source_id: int | None, text: str | None) -> str:
        """Error text (messages, stack traces, error-group patterns) as this user may see it."""
        rules = self.rules(source_id)
        return mask_text(text or "", rules) if rules else text or ""


def view_of(letter: DeadLetter, user, *, revision=None) -> MaskedMessage:
    """What ``user`` may see of ``letter`` (of its ``revision``'s payload and headers if given)."""
    if revision is None:
        return Masker(user).message(letter)
    return Masker(user).message(letter, payload=bytes(revision.payload), headers=revision.headers)
