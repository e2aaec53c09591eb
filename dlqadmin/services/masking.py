"""Masking: hide sensitive parts of payloads, headers and error text from users who may not see them.

``masked_for(user)`` (``dlqadmin.masking``) says whether masking applies (viewers; anyone without
the unmasked-view permission). ``MaskedMessage.of(letter, rules)`` gives the payload, headers, key,
broker properties and error text as that user may see them; a :class:`Masker` does it for one user
over many messages (one request, one export), looking the rules up once per source. Masked values
are replaced on the server: the originals never leave it for such users (UI, API, admin and exports
all go through here). Search cannot probe them either: ``dlqadmin.selectors.dead_letters_for``
matches only unmasked text. The pure functions (what one rule hides) are in ``dlqadmin.masking``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from django.db.models import Q

from dlqadmin.decoding import compression
from dlqadmin.decoding.chain import Decoded
from dlqadmin.masking import (
    mask_headers,
    mask_key,
    mask_payload,
    mask_properties,
    mask_text,
    mask_value,
    masked_for,
)
from dlqadmin.models import DeadLetter, MaskingRule
from dlqadmin.services.decoding import payload_decode


def rules_for(source_id: int | None) -> list[MaskingRule]:
    """Enabled rules for ``source_id`` (None, a row tied to no source: every enabled rule)."""
    if source_id is None:
        return list(MaskingRule.objects.filter(enabled=True))
    return list(
        MaskingRule.objects.filter(enabled=True)
        .filter(Q(sources__isnull=True) | Q(sources__id=source_id))
        .distinct()
    )


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
        shown_payload = mask_payload(raw_payload, rules)
        if rules and _decodes_to_masked(letter, raw_payload, raw_headers, rules):
            shown_payload = HIDDEN_ENCODED
        return cls(
            shown_payload,
            mask_headers(raw_headers or [], rules),
            mask_text(letter.error_message, rules),
            mask_text(letter.stacktrace, rules),
            bool(rules),
            mask_key(raw_key, rules),
            mask_properties(raw_properties, rules),
            [mask_text(note, rules) for note in notes],
        )


#: the raw payload of a compressed or binary-encoded message whose decoded value masking changes
HIDDEN_ENCODED = b"[encoded payload hidden by masking rules: see the decoded view]"


def _decodes_to_masked(letter: DeadLetter, payload: bytes, headers, rules: list[MaskingRule]) -> bool:
    """Whether ``payload`` is compressed or binary-encoded (gzip, MessagePack ...) and hides
    values the rules mask: its raw bytes would give them away (decompress the download, read
    the strings in a MessagePack dump), so a masked user sees only the masked decoded value."""
    found = payload_decode(letter, payload=payload, headers=headers)
    if not (found.has_value and found.changes_the_view):
        return False
    return mask_value(found.value, rules) != found.value


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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

    def decoded(self, letter: DeadLetter, *, payload: bytes | None = None, headers=None) -> Decoded:
        """``letter``'s payload (or a revision's) decoded (``services/decoding.py``), the value
        masked as this user may see it: a JSON path rule hides a field of a decoded Avro record
        or gzip body exactly as of a JSON payload."""
        found = payload_decode(letter, payload=payload, headers=headers)
        rules = self.rules(letter.source_id)
        if not rules:
            return found
        return replace(
            found,
            value=mask_value(found.value, rules) if found.has_value else None,
            error=mask_text(found.error, rules),
            inner=b"",  # the unmasked innermost bytes never leave for a masked user
            masked=True,
        )

    def payload(self, source_id: int | None, payload: bytes) -> bytes:
        """A payload without its message (table previews): masked; a compressed or binary one
        is hidden whole where rules apply, since its decoded fields cannot be masked here."""
        rules = self.rules(source_id)
        if not rules:
            return payload
        if compression.detect(payload) or not _is_utf8(payload):
            return HIDDEN_ENCODED
        return mask_payload(payload, rules)

    def text(self, source_id: int | None, text: str | None) -> str:
        """Error text (messages, stack traces, error-group patterns) as this user may see it."""
        rules = self.rules(source_id)
        return mask_text(text or "", rules) if rules else text or ""


def view_of(letter: DeadLetter, user, *, revision=None) -> MaskedMessage:
    """What ``user`` may see of ``letter`` (of its ``revision``'s payload and headers if given)."""
    if revision is None:
        return Masker(user).message(letter)
    return Masker(user).message(letter, payload=bytes(revision.payload), headers=revision.headers)
