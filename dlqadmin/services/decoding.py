"""Decoding a stored dead letter at read time: what ``dlqadmin.decoding`` needs to know about
it (the content type from its broker properties or headers, the source's ``payload_format``
option, the connection's Schema Registry). Read-only: the stored payload and headers are never
changed, nothing is cached in the database. Masking of the decoded value is the Masker's
(``services/masking.py``)."""

from __future__ import annotations

from dataclasses import replace

from brokers import headers as header_codec
from dlqadmin import permissions
from dlqadmin.decoding import confluent
from dlqadmin.decoding.chain import PAYLOAD_FORMATS, Decoded, decode
from dlqadmin.decoding.reencode import EncodeError, reencode
from dlqadmin.models import DeadLetter, Source
from dlqadmin.services.dead_letters import EditError
from dlqadmin.services.schemas import registry_lookup, registry_version, stored_schema_for


def payload_format_of(source: Source) -> str:
    """The source's ``payload_format`` option (``auto`` when unset or unknown)."""
    value = (source.options or {}).get("payload_format") or "auto"
    return value if value in PAYLOAD_FORMATS else "auto"


def content_type_of(letter: DeadLetter, headers: list | None = None) -> str:
    """The broker's content type (AMQP property, NATS / Kafka ``content-type`` header)."""
    found = (letter.properties or {}).get("content_type")
    if isinstance(found, str) and found:
        return found
    return header_codec.get_text(letter.headers if headers is None else headers, "content-type")


def payload_decode(
    letter: DeadLetter, *, payload: bytes | None = None, headers: list | None = None
) -> Decoded:
    """``letter``'s payload (or a revision's ``payload`` / ``headers``) decoded, unmasked."""
    if not letter.payload_available:
        return Decoded(attempted=False)
    raw = bytes(letter.payload if payload is None else payload)
    shown_headers = letter.headers if headers is None else headers
    content_type = content_type_of(letter, headers)

    def header_value_of(name: str) -> str:
        if name.lower() in ("content-type", "content_type"):
            return content_type
        return header_codec.get_text(shown_headers or [], name)

    return decode(
        raw,
        content_type=content_type,
        payload_format=payload_format_of(letter.source),
        schemas=registry_lookup(letter.source.connection),
        stored=stored_schema_for(letter.source_id, header_value_of),
    )


def payload_reencode(letter: DeadLetter, value, *, actor, schema_version: int | None = None) -> bytes:
    """The edited decoded ``value`` of ``letter`` as bytes its consumer reads: decoded from the
    latest revision (else the original) to learn its schema, format and compressions, then
    re-encoded the same way (``dlqadmin.decoding.reencode``). Raises EditError keyed
    ``payload_json`` and ``payload_json.<field>`` (the schema's errors, field by field);
    PermissionDenied unless ``actor`` may edit and see unmasked content (an edit starts from it)."""
    permissions.require(actor, permissions.EDIT)
    permissions.require(actor, permissions.VIEW_UNMASKED)
    latest = letter.revisions.first()
    if latest is not None:
        found = payload_decode(letter, payload=bytes(latest.payload), headers=latest.headers)
    else:
        found = payload_decode(letter)
    if schema_version is not None:
        found = _with_version(letter, found, schema_version)
    try:
        return reencode(found, value)
    except EncodeError as exc:
        errors = {"payload_json": str(exc)}
        errors.update({f"payload_json.{k}" if k != "payload_json" else k: v for k, v in exc.fields.items()})
        raise EditError(errors) from None


def _with_version(letter: DeadLetter, found: Decoded, version: int) -> Decoded:
    """``found`` to be re-encoded with version ``version`` of its registry subject."""
    record = found.record
    if record is None or not record.framed or not record.schema.subject:
        raise EditError({"schema_version": "only a Schema Registry record can take another schema version"})
    try:
        schema = registry_version(letter.source.connection, record.schema.subject, version)
        return replace(found, record=confluent.with_schema(record, schema))
    except (confluent.SchemaUnavailable, confluent.RecordError) as exc:
        raise EditError({"schema_version": f"{record.schema.subject} v{version}: {exc}"}) from None
