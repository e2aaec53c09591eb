"""``decode``: the whole read path from stored bytes to a value an operator can read.

Order: up to ``MAX_LAYERS`` compressions (recognised by magic bytes, so nested ones such as
gzip inside zstd unwrap too), then the body format: the source's ``payload_format`` setting
when it names one, else the content type, else JSON when the bytes parse as JSON, else UTF-8
text. MessagePack and CBOR are never guessed: binary data parses as MessagePack far too often.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import compression, confluent, formats

MAX_LAYERS = 3

#: values of a source's ``payload_format`` setting
PAYLOAD_FORMATS = {
    "auto": "Recognise compression by magic bytes; the format from the content type, else JSON or text",
    "json": "JSON (after any compression)",
    "msgpack": "MessagePack (after any compression)",
    "cbor": "CBOR (after any compression)",
    "text": "UTF-8 text (after any compression)",
    "raw": "Do not decode: show the bytes only",
}


@dataclass(frozen=True)
class Step:
    kind: str  # a compression (gzip, zstd, snappy, lz4) or a format (json, msgpack, cbor, text)
    label: str  # what a person reads, e.g. "snappy (framed)"


@dataclass
class Decoded:
    """What decoding found. ``value`` is JSON-compatible (see ``formats.jsonable``) and only
    meaningful when ``has_value``; ``error`` says why decoding stopped early; ``inner`` is the
    innermost body reached (after decompression), a new object: the input is never changed."""

    value: Any = None
    has_value: bool = False
    steps: tuple[Step, ...] = ()
    error: str = ""
    inner: bytes = b""
    attempted: bool = field(default=True)
    masked: bool = False  # set by the caller that applied masking rules to ``value``
    record: confluent.Record | None = None  # a wire-format record: its schema, for re-encoding

    @property
    def chain(self) -> str:
        """The steps as a person reads them: "gzip → JSON"."""
        return " → ".join(step.label for step in self.steps)

    @property
    def compressions(self) -> list[str]:
        """The compressions, outermost first."""
        return [s.kind for s in self.steps if s.kind in compression.MAGIC]

    @property
    def format(self) -> str:
        """The body format reached (json, msgpack, cbor, text), or "" when none was."""
        kinds = [s.kind for s in self.steps if s.kind not in compression.MAGIC]
        return kinds[-1] if kinds else ""

    @property
    def changes_the_view(self) -> bool:
        """Whether decoding shows more than the raw bytes do: a decompression, a binary format,
        or a decoding error worth explaining."""
        return bool(self.error) or bool(self.compressions) or self.format not in ("", "json", "text")

    @property
    def text(self) -> str | None:
        """The value as pretty JSON text (for display, search and masking), or None."""
        if not self.has_value:
            return None
        try:
            return json.dumps(self.value, ensure_ascii=False, indent=2)
        except (ValueError, RecursionError):
            return None


def decode(
    data: bytes,
    *,
    content_type: str = "",
    payload_format: str = "auto",
    schemas: confluent.SchemaLookup | None = None,
    stored: confluent.Schema | None = None,
) -> Decoded:
    """Decode ``data`` (never modified). Never raises for any input bytes: a failed step is
    ``Decoded.error`` (truncated, corrupt, too large, not the declared format, unknown schema).
    With ``schemas`` (a Schema Registry), a body in the Confluent wire format (magic byte 0 and
    a schema id) is read with the schema it names; else with ``stored`` (a schema of the store
    bound to the message's source), a body that is just the record is read with it."""
    data = bytes(data)
    if payload_format == "raw":
        return Decoded(inner=data, attempted=False)
    steps: list[Step] = []
    current = data
    for _ in range(MAX_LAYERS):
        name = compression.detect(current)
        if name is None:
            break
        try:
            current = compression.decompress(name, current)
        except compression.DecompressError as exc:
            return Decoded(steps=tuple(steps), error=str(exc), inner=current)
        steps.append(Step(name, compression.LABELS[name]))
    else:
        if compression.detect(current):
            return Decoded(
                steps=tuple(steps), error=f"more than {MAX_LAYERS} compression layers", inner=current
            )
    found = confluent.frame(current) if schemas is not None else None
    if found is not None:
        return _wire(steps, found, schemas, current)
    if stored is not None:
        try:
            record = confluent.read_bare(current, stored)
        except confluent.RecordError as exc:
            return Decoded(steps=tuple(steps), error=f"schema {stored.label}: {exc}", inner=current)
        steps = [*steps, Step(stored.kind, record.label)]
        return Decoded(value=record.value, has_value=True, steps=tuple(steps), inner=current, record=record)
    declared = payload_format if payload_format in formats.LABELS else None
    fmt = declared or formats.format_of_content_type(content_type)
    if fmt is not None:
        try:
            value = formats.parse(fmt, current)
        except formats.FormatError as exc:
            said = "the source's payload format" if declared else f"content type {content_type}"
            return Decoded(
                steps=tuple(steps), error=f"{exc} ({said} says {formats.LABELS[fmt]})", inner=current
            )
        return _found(steps, fmt, value, current)
    return _guess(steps, current)


def _wire(steps: list[Step], found: confluent.Frame, schemas, current: bytes) -> Decoded:
    where = f"Confluent wire format, schema id {found.schema_id}"
    try:
        schema = schemas(found.schema_id)
        record = confluent.read(found, schema)
    except (confluent.SchemaUnavailable, confluent.RecordError) as exc:
        return Decoded(steps=tuple(steps), error=f"{where}: {exc}", inner=current)
    steps = [*steps, Step(schema.kind, record.label)]
    return Decoded(value=record.value, has_value=True, steps=tuple(steps), inner=current, record=record)


def _found(steps: list[Step], fmt: str, value, inner: bytes) -> Decoded:
    steps = [*steps, Step(fmt, formats.LABELS[fmt])]
    return Decoded(value=value, has_value=True, steps=tuple(steps), inner=inner)


def _guess(steps: list[Step], current: bytes) -> Decoded:
    if current.lstrip()[:1] in (b"{", b"["):
        try:
            return _found(steps, "json", formats.parse("json", current), current)
        except formats.FormatError:
            pass
    try:
        text = current.decode("utf-8")
    except UnicodeDecodeError:
        error = ""
        if steps:
            error = (
                f"the decompressed body is binary ({len(current)} bytes) and no format is set: "
                "set the source's payload format (msgpack, cbor) if it is one of those"
            )
        return Decoded(steps=tuple(steps), error=error, inner=current)
    return _found(steps, "text", text, current)
