"""The write path: an edited decoded value back to bytes the consumer reads, as the original was.

A Confluent wire-format or stored-schema record is validated against its schema and encoded with
the same schema id (and Protobuf message indexes); MessagePack, CBOR, JSON and text are
serialized in their format; then the compressions of the original are applied again, innermost
first. An edit that does not fit says so field by field (``EncodeError.fields``, keyed by the
dotted path of the field, e.g. ``card.number``).
"""

from __future__ import annotations

from . import compression, confluent, formats
from .chain import Decoded


class EncodeError(ValueError):
    def __init__(self, message: str, *, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.fields = fields or {}


def reencode(decoded: Decoded, value) -> bytes:
    """``value`` encoded as ``decoded`` was read. Raises EncodeError (the message cannot be
    re-encoded: it did not decode, or ``value`` does not fit its schema or format)."""
    if not decoded.has_value:
        raise EncodeError(
            f"the payload did not decode ({decoded.error or 'no decoder applies'}): edit the raw bytes"
        )
    if decoded.record is not None:
        try:
            body = confluent.encode(decoded.record, value)
        except confluent.RecordError as exc:
            raise EncodeError(str(exc), fields=exc.fields) from None
    else:
        try:
            body = formats.serialize(decoded.format, value)
        except (formats.FormatError, TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"{formats.LABELS.get(decoded.format, decoded.format)}: {exc}") from None
    for name in reversed(decoded.compressions):
        body = compression.compress(name, body)
    return body
