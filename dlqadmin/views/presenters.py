"""How a stored dead letter is shown: payload views, headers, origin, diffs.

Payloads and headers are hostile input. Everything built here is either plain data that the
templates auto-escape, or HTML assembled with ``format_html`` / ``escape`` from escaped parts.
Nothing here ever marks broker data safe unescaped.

The seam between a stored message and what a user is shown is a
:class:`~dlqadmin.services.masking.MaskedMessage` (``Masker(user).message(letter)`` /
``view_of``): ``payload_view`` and ``headers_view`` render only what it holds, so every page shows
the same, possibly masked, bytes as the API and the exports. Error text (messages, stack traces,
error-group patterns) goes through the same Masker.
"""

from __future__ import annotations

import base64
import difflib
import json
import re
from dataclasses import dataclass, field

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from brokers import headers as header_codec
from dlqadmin.decoding.chain import Decoded
from dlqadmin.models import BrokerKind, DeadLetter, DeadLetterRevision, ErrorGroup
from dlqadmin.services.masking import MaskedMessage, Masker, view_of

#: beyond these sizes a view shows a prefix and points at the raw download
TREE_LIMIT = 512 * 1024
TREE_MAX_NODES = 5000
TREE_MAX_DEPTH = 64
TEXT_LIMIT = 256 * 1024
HEX_LIMIT = 16 * 1024
HEADERS_LIMIT = 500
EDIT_LIMIT = 1024 * 1024
PREVIEW_CHARS = 160


# ------------------------------------------------------------------------------------------
# The seam


@dataclass
class PayloadView:
    """The bytes a user may see, and how to show them."""

    data: bytes
    content_type: str = ""
    masked: bool = False
    available: bool = True

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def is_utf8(self) -> bool:
        try:
            self.data.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False

    @property
    def json_value(self):
        """The parsed JSON document, or None when the payload is not JSON (or too large)."""
        if not hasattr(self, "_json"):
            self._json = _parse_json(self.data) if self.size <= TREE_LIMIT else None
        return self._json

    @property
    def is_json(self) -> bool:
        return self.json_value is not None

    @property
    def looks_binary(self) -> bool:
        if not self.is_utf8:
            return True
        sample = self.data[:4096]
        controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 13))
        return controls > max(2, len(sample) // 50)

    @property
    def default_view(self) -> str:
        if self.is_json:
            return "json"
        return "hex" if self.looks_binary else "text"

    @property
    def text(self) -> str:
        return safe_text(self.data[:TEXT_LIMIT])

    @property
    def text_truncated(self) -> bool:
        return self.size > TEXT_LIMIT

    @property
    def hexdump(self) -> str:
        return hexdump(self.data[:HEX_LIMIT])

    @property
    def hex_truncated(self) -> bool:
        return self.size > HEX_LIMIT

    @property
    def json_tree(self) -> SafeString:
        return json_tree(self.json_value)

    @property
    def preview(self) -> str:
        """One line for tables."""
        head = self.data[: PREVIEW_CHARS * 4]
        text = safe_text(head) if not self.looks_binary else "0x" + head[: PREVIEW_CHARS // 2].hex()
        text = " ".join(text.split())
        return text[:PREVIEW_CHARS] + ("…" if len(text) > PREVIEW_CHARS or self.size > len(head) else "")


def payload_view(letter: DeadLetter, seen: MaskedMessage) -> PayloadView:
    """How to show the payload in ``seen`` (what the user may see of ``letter``)."""
    return PayloadView(
        data=bytes(seen.payload or b""),
        content_type=str((letter.properties or {}).get("content_type") or ""),
        masked=seen.masked,
        available=letter.payload_available,
    )


@dataclass
class DecodedView:
    """How to show a decoded payload (already masked for the user: ``Masker.decoded``)."""

    decoded: Decoded

    @property
    def shown(self) -> bool:
        """Whether the page shows a Decoded tab or a decoding error: only when decoding shows
        more than the raw views do (a compression, a binary format, an error)."""
        return self.decoded.attempted and self.decoded.changes_the_view

    @property
    def has_value(self) -> bool:
        return self.decoded.has_value

    @property
    def chain(self) -> str:
        return self.decoded.chain

    @property
    def error(self) -> str:
        return self.decoded.error

    @property
    def masked(self) -> bool:
        return self.decoded.masked

    @property
    def is_tree(self) -> bool:
        return isinstance(self.decoded.value, dict | list)

    @property
    def tree(self) -> SafeString:
        return json_tree(self.decoded.value)

    @property
    def text(self) -> str:
        text = self.decoded.text or ""
        return text[:TEXT_LIMIT]

    @property
    def text_truncated(self) -> bool:
        return len(self.decoded.text or "") > TEXT_LIMIT


def payload_for(user, letter: DeadLetter, revision: DeadLetterRevision | None = None) -> PayloadView:
    """The payload (of ``revision`` if given) as ``user`` may see it."""
    return payload_view(letter, view_of(letter, user, revision=revision))


@dataclass
class HeaderRow:
    name: str
    type: str
    text: str


@dataclass
class HeadersView:
    rows: list[HeaderRow] = field(default_factory=list)
    total: int = 0
    masked: bool = False

    @property
    def hidden(self) -> int:
        return self.total - len(self.rows)


def headers_view(seen: MaskedMessage) -> HeadersView:
    """The headers in ``seen``, first ``HEADERS_LIMIT`` of them."""
    encoded = seen.headers or []
    rows = [HeaderRow(*row) for row in header_codec.text_pairs(encoded[:HEADERS_LIMIT])]
    return HeadersView(rows=rows, total=len(encoded), masked=seen.masked)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the last one "…" when cut (Django's
    ``truncatechars``, without its cost per call: list pages clip hundreds of strings)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show_groups(masker: Masker, groups: list[ErrorGroup]) -> list[ErrorGroup]:
    """Set ``pattern_shown`` / ``sample_shown`` on each group: its error text as the user may see
    it (templates show these, never the stored fields)."""
    for group in groups:
        group.pattern_shown = masker.text(group.source_id, group.message_pattern)
        group.sample_shown = masker.text(group.source_id, group.sample_message)
    return groups


# ------------------------------------------------------------------------------------------
# Renderings


def _parse_json(data: bytes):
    if not data or data.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


#: control characters other than newline, tab and carriage return, and DEL
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def safe_text(data: bytes) -> str:
    """Bytes as text with every undecodable byte and control character made visible
    (``\\xff``, ``\\x00``) so nothing is silently lost or interpreted."""
    text = data.decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def hexdump(data: bytes) -> str:
    """Offset, 16 hex bytes and their printable ASCII, one line per 16 bytes."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk[:8]) + "  " + " ".join(f"{b:02x}" for b in chunk[8:])
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<49}  |{ascii_}|")
    return "\n".join(lines)


def json_tree(value) -> SafeString:
    """A collapsible tree of ``<details>`` elements (no script needed). Every key and scalar is
    escaped; depth and node count are bounded (a 10 000-level document degrades to "…")."""
    budget = [TREE_MAX_NODES]
    return mark_safe(_node(value, 0, budget))  # noqa: S308 - built only from escaped parts


def _scalar(value) -> str:
    if value is None:
        return '<span class="j-null">null</span>'
    if isinstance(value, bool):
        return f'<span class="j-bool">{"true" if value else "false"}</span>'
    if isinstance(value, int | float):
        return format_html('<span class="j-num">{}</span>', json.dumps(value))
    return format_html('<span class="j-str">{}</span>', json.dumps(value, ensure_ascii=False))


def _node(value, depth: int, budget: list[int]) -> str:
    budget[0] -= 1
    if not isinstance(value, dict | list):
        return _scalar(value)
    is_dict = isinstance(value, dict)
    opener, closer = ("{", "}") if is_dict else ("[", "]")
    if not value:
        return f'<span class="j-punct">{opener}{closer}</span>'
    if depth >= TREE_MAX_DEPTH or budget[0] <= 0:
        return f'<span class="j-punct">{opener}…{closer}</span> <span class="j-more">(not expanded)</span>'
    items = value.items() if is_dict else enumerate(value)
    parts = []
    for key, child in items:
        if budget[0] <= 0:
            parts.append('<li class="j-more">… (more; see Text or download)</li>')
            break
        label = (
            format_html('<span class="j-key">{}</span>: ', json.dumps(key, ensure_ascii=False))
            if is_dict
            else ""
        )
        parts.append(f"<li>{label}{_node(child, depth + 1, budget)}</li>")
    count = f"{len(value)} {'key' if is_dict else 'item'}{'s' if len(value) != 1 else ''}"
    return (
        f'<details class="j-node" {"open" if depth < 3 else ""}>'
        f'<summary><span class="j-punct">{opener}</span> <span class="j-count">{count}</span></summary>'
        f'<ul>{"".join(parts)}</ul><span class="j-punct">{closer}</span></details>'
    )


# ------------------------------------------------------------------------------------------
# Origin


def origin_rows(letter: DeadLetter) -> list[tuple[str, str]]:
    """Where the message was going, in the terms of its broker."""
    kind = letter.source.connection.kind
    rows: list[tuple[str, object]]
    if kind == BrokerKind.RABBITMQ:
        rows = [
            ("Exchange", letter.origin_exchange or "(default exchange)"),
            ("Routing key", letter.origin_routing_key),
            ("Queue", letter.origin_queue),
        ]
        keys = (letter.origin_extra or {}).get("routing_keys")
        if keys:
            rows.append(("All routing keys", ", ".join(str(k) for k in keys)))
    elif kind == BrokerKind.KAFKA:
        rows = [
            ("Topic", letter.origin_topic),
            ("Partition", letter.origin_partition),
            ("Offset", letter.origin_offset),
        ]
    else:
        rows = [
            ("Stream", letter.origin_stream),
            ("Subject", letter.origin_subject),
            ("Sequence", letter.origin_seq),
        ]
    for key, value in sorted((letter.origin_extra or {}).items()):
        if key != "routing_keys":
            rows.append(
                (
                    key.replace("_", " ").capitalize(),
                    json.dumps(value) if not isinstance(value, str) else value,
                )
            )
    return [(label, "" if value is None else str(value)) for label, value in rows]


# ------------------------------------------------------------------------------------------
# Editing


def editable_payload(view: PayloadView) -> tuple[str, str]:
    """``(encoding, text)`` to put in the edit box: pretty JSON, UTF-8 text or base64."""
    if view.is_json:
        try:
            return "text", json.dumps(view.json_value, indent=2, ensure_ascii=False)
        except RecursionError:
            pass
    if view.is_utf8 and not view.looks_binary:
        return "text", view.data.decode("utf-8")
    return "base64", base64.b64encode(view.data).decode("ascii")


def editable_headers(encoded: list) -> str:
    """Headers in the stored, typed encoding, one ``[name, node]`` per line."""
    if not encoded:
        return "[]"
    lines = [json.dumps(pair, ensure_ascii=False) for pair in encoded]
    return "[\n  " + ",\n  ".join(lines) + "\n]"


@dataclass
class DiffLine:
    kind: str  # "add", "del", "ctx", "hunk"
    text: str


def diff_lines(before: str, after: str, *, context: int = 3) -> list[DiffLine]:
    out = []
    for line in difflib.unified_diff(
        before.splitlines(), after.splitlines(), "original", "edited", lineterm="", n=context
    ):
        if line.startswith(("---", "+++")):
            continue
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx")
        out.append(DiffLine(kind=kind, text=line))
    return out


def comparable_payload(data: bytes) -> str:
    """A payload as diffable text: pretty JSON when JSON, visible-escaped text otherwise."""
    value = _parse_json(data)
    if value is not None:
        try:
            return json.dumps(value, indent=2, ensure_ascii=False)
        except RecursionError:
            pass
    return safe_text(data[:EDIT_LIMIT])


def headers_text(encoded: list) -> str:
    return "\n".join(f"{name} ({t}): {text}" for name, t, text in header_codec.text_pairs(encoded or []))
