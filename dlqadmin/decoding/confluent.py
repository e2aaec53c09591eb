"""Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then the record; a
Protobuf record first names its message by an array of zigzag varints (``[0]``, the first
message of the file, is the single byte 0). Avro is read with fastavro, Protobuf with the
protobuf runtime from a serialized FileDescriptorProto, JSON Schema records are JSON.

The schemas come from the caller (a ``SchemaLookup``: the connection's registry, with a cache,
in ``services/schemas.py``); nothing here does I/O. ``encode`` is the inverse, for an edited
record: validated against the same schema and framed with the same id and message indexes.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, EncodeError

from . import avro

KINDS = {"AVRO": "avro", "PROTOBUF": "protobuf", "JSON": "json_schema"}
LABELS = {"avro": "Avro", "protobuf": "Protobuf", "json_schema": "JSON Schema"}
MAX_INDEXES = 64


@dataclass(frozen=True)
class Schema:
    """A schema with its references resolved (dependencies first, each ``(name, Schema)``)."""

    kind: str  # avro, protobuf, json_schema
    text: str  # Avro JSON, a base64 FileDescriptorProto (Protobuf), or a JSON Schema
    references: tuple[tuple[str, Schema], ...] = ()
    label: str = ""  # e.g. "orders-value v2"
    schema_id: int | None = None
    message_type: str = ""  # Protobuf from the schema store: the message the body holds
    subject: str = ""  # the registry subject it is registered under (for a later version)


class SchemaUnavailable(Exception):
    """The schema cannot be had: unknown id, registry unreachable or refusing, malformed."""


class SchemaLookup(Protocol):
    def __call__(self, schema_id: int) -> Schema: ...


class RecordError(ValueError):
    """The record does not read (or, on encode, does not fit) with its schema."""

    def __init__(self, message: str, *, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.fields = fields or {}


@dataclass(frozen=True)
class Frame:
    schema_id: int
    body: bytes  # after the schema id (a Protobuf body still starts with its indexes)


@dataclass
class Record:
    value: object
    schema: Schema
    indexes: list[int] = field(default_factory=list)  # Protobuf only
    message_name: str = ""  # Protobuf only
    framed: bool = True  # False: a bare body read with a schema of the store (no magic byte, no id)

    @property
    def label(self) -> str:
        """E.g. "Avro acme.Order (orders-value v2, schema id 7)"."""
        name = self.message_name or _schema_name(self.schema)
        schema_id = f"schema id {self.schema.schema_id}" if self.framed else ""
        where = ", ".join(p for p in (self.schema.label, schema_id) if p)
        return f"{LABELS[self.schema.kind]}{' ' + name if name else ''} ({where})"


def _schema_name(schema: Schema) -> str:
    try:
        document = json.loads(schema.text) if schema.kind != "protobuf" else None
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    if schema.kind == "avro":
        name, space = document.get("name"), document.get("namespace")
        return f"{space}.{name}" if name and space and "." not in str(name) else str(name or "")
    return str(document.get("title") or "")


def frame(data: bytes) -> Frame | None:
    """The wire-format frame of ``data``, or None when it cannot be one."""
    if len(data) < 5 or data[0] != 0:
        return None
    return Frame(schema_id=int.from_bytes(data[1:5], "big"), body=data[5:])


def read(found: Frame, schema: Schema) -> Record:
    """The record in ``found`` read with ``schema``; raises RecordError."""
    if schema.kind == "avro":
        return Record(value=_read_avro(found.body, schema), schema=schema)
    if schema.kind == "protobuf":
        indexes, rest = _read_indexes(found.body)
        message_class = _message_class(schema, tuple(indexes))
        message = message_class()
        try:
            message.ParseFromString(rest)
        except (DecodeError, RuntimeError) as exc:
            raise RecordError(f"Protobuf: {exc} (truncated or not this message)") from None
        value = json_format.MessageToDict(message, preserving_proto_field_name=True)
        return Record(value=value, schema=schema, indexes=indexes, message_name=message.DESCRIPTOR.full_name)
    if schema.kind == "json_schema":
        try:
            return Record(value=json.loads(found.body.decode("utf-8")), schema=schema)
        except (ValueError, RecursionError) as exc:
            raise RecordError(f"JSON Schema record: not JSON ({exc})") from None
    raise RecordError(f"unknown schema type {schema.kind!r}")


def read_bare(body: bytes, schema: Schema) -> Record:
    """A body that is just the record (no wire-format frame), read with a stored ``schema``."""
    if schema.kind == "protobuf":
        indexes = list(message_indexes(schema))
        message = _message_class(schema, tuple(indexes))()
        try:
            message.ParseFromString(body)
        except (DecodeError, RuntimeError) as exc:
            raise RecordError(f"Protobuf: {exc} (truncated or not this message)") from None
        value = json_format.MessageToDict(message, preserving_proto_field_name=True)
        return Record(value, schema, indexes, message.DESCRIPTOR.full_name, framed=False)
    found = read(Frame(schema_id=0, body=body), schema)
    found.framed = False
    return found


def stored_schema(kind: str, definition: str, *, message_type: str = "", label: str = "") -> Schema:
    """A schema of the store as ``read_bare`` takes it: Avro or JSON Schema text as is; Protobuf
    from a base64 FileDescriptorSet (``protoc --include_imports --descriptor_set_out``), the file
    that defines ``message_type`` being the schema and the others its references. Raises
    RecordError when the definition does not load (so uploads are checked with it)."""
    if kind == "avro":
        schema = Schema(kind="avro", text=definition, label=label)
        _avro_schema(schema)
        return schema
    if kind == "json_schema":
        schema = Schema(kind="json_schema", text=definition, label=label)
        _json_schema_document(schema)
        return schema
    if kind != "protobuf":
        raise RecordError(f"unknown schema kind {kind!r}")
    try:
        files = descriptor_pb2.FileDescriptorSet()
        files.ParseFromString(base64.b64decode(definition.encode("ascii"), validate=True))
    except (binascii.Error, ValueError, UnicodeEncodeError, DecodeError):
        raise RecordError("not a base64 FileDescriptorSet (protoc --descriptor_set_out)") from None
    main = next((f for f in files.file if _defines(f, message_type)), None)
    if main is None:
        raise RecordError(f"no message {message_type or '(none given)'} in the descriptor set")
    refs = tuple(
        (f.name, Schema(kind="protobuf", text=base64.b64encode(f.SerializeToString()).decode("ascii")))
        for f in files.file
        if f.name != main.name
    )
    schema = Schema(
        kind="protobuf",
        text=base64.b64encode(main.SerializeToString()).decode("ascii"),
        references=refs,
        label=label,
        message_type=message_type,
    )
    _message_class(schema, tuple(message_indexes(schema)))
    return schema


def _defines(proto: descriptor_pb2.FileDescriptorProto, message_type: str) -> bool:
    try:
        _indexes_in(proto, message_type)
    except RecordError:
        return False
    return True


def message_indexes(schema: Schema) -> list[int]:
    """The index path of a stored Protobuf schema's ``message_type`` in its file."""
    return _indexes_in(_file_proto(schema.text), schema.message_type)


def _indexes_in(proto: descriptor_pb2.FileDescriptorProto, message_type: str) -> list[int]:
    prefix = f"{proto.package}." if proto.package else ""
    if not message_type.startswith(prefix) or not message_type[len(prefix) :]:
        raise RecordError(f"no message {message_type} in {proto.name}")
    messages, path = proto.message_type, []
    for name in message_type[len(prefix) :].split("."):
        index = next((i for i, m in enumerate(messages) if m.name == name), None)
        if index is None:
            raise RecordError(f"no message {message_type} in {proto.name}")
        path.append(index)
        messages = messages[index].nested_type
    return path


def with_schema(record: Record, schema: Schema) -> Record:
    """``record`` to be written with another ``schema`` (a later version of its subject): same
    kind, and for Protobuf the same message, found by name in the new file."""
    if schema.kind != record.schema.kind:
        raise RecordError(
            f"the chosen schema is {LABELS[schema.kind]}, the record {LABELS[record.schema.kind]}"
        )
    indexes = record.indexes
    if schema.kind == "protobuf":
        indexes = _indexes_in(_file_proto(schema.text), record.message_name)
    return Record(record.value, schema, list(indexes), record.message_name, record.framed)


def encode(record: Record, value) -> bytes:
    """``value`` (the record's JSON form, edited) validated against ``record.schema`` and framed
    as ``record`` was: same schema id, same message indexes. Raises RecordError with ``fields``."""
    schema = record.schema
    head = b"\x00" + int(schema.schema_id or 0).to_bytes(4, "big") if record.framed else b""
    if schema.kind == "avro":
        return head + _write_avro(value, schema)
    if schema.kind == "protobuf":
        message_class = _message_class(schema, tuple(record.indexes))
        try:
            message = json_format.ParseDict(value, message_class())
            body = message.SerializeToString()
        except (json_format.ParseError, EncodeError, TypeError, ValueError) as exc:
            raise RecordError(f"Protobuf: {exc}", fields=_protobuf_fields(str(exc))) from None
        return head + (_write_indexes(record.indexes) if record.framed else b"") + body
    if schema.kind == "json_schema":
        _validate_json(value, schema)
        return head + json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    raise RecordError(f"unknown schema type {schema.kind!r}")


# ---- Avro (the format itself is avro.py) ---------------------------------------------------


@lru_cache(maxsize=256)
def _avro_schema(schema: Schema):
    try:
        return avro.parse(schema.text, tuple(ref.text for _name, ref in schema.references))
    except avro.AvroError as exc:
        raise RecordError(str(exc), fields=exc.fields) from None


def _read_avro(body: bytes, schema: Schema):
    try:
        return avro.read(body, _avro_schema(schema))
    except avro.AvroError as exc:
        raise RecordError(str(exc), fields=exc.fields) from None


def _write_avro(value, schema: Schema) -> bytes:
    try:
        return avro.write(value, _avro_schema(schema))
    except avro.AvroError as exc:
        raise RecordError(str(exc), fields=exc.fields) from None


# ---- Protobuf --------------------------------------------------------------------------------


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise RecordError("Protobuf: the message indexes end early (truncated)")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), at
        if shift > 63:
            raise RecordError("Protobuf: a message index is not a varint")


def _read_indexes(body: bytes) -> tuple[list[int], bytes]:
    count, at = _read_varint(body, 0)
    if count == 0:
        return [0], body[at:]
    if count < 0 or count > MAX_INDEXES:
        raise RecordError(f"Protobuf: {count} message indexes (not the Confluent framing)")
    indexes = []
    for _ in range(count):
        index, at = _read_varint(body, at)
        indexes.append(index)
    return indexes, body[at:]


def _zigzag(value: int) -> bytes:
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _write_indexes(indexes: list[int]) -> bytes:
    if indexes == [0]:
        return b"\x00"
    return _zigzag(len(indexes)) + b"".join(_zigzag(i) for i in indexes)


def _file_proto(text: str) -> descriptor_pb2.FileDescriptorProto:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        proto = descriptor_pb2.FileDescriptorProto()
        proto.ParseFromString(raw)
    except (binascii.Error, ValueError, UnicodeEncodeError, DecodeError):
        raise RecordError(
            "Protobuf schema is not a serialized descriptor (the registry is asked with "
            "format=serialized; .proto text needs the schema store's compiled form)"
        ) from None
    return proto


@lru_cache(maxsize=256)
def _message_class(schema: Schema, indexes: tuple[int, ...]):
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(proto: descriptor_pb2.FileDescriptorProto) -> None:
        for dependency in proto.dependency:
            if dependency not in added and dependency.startswith("google/protobuf/"):
                _add_well_known(pool, dependency)
                added.add(dependency)
        if proto.name not in added:
            pool.Add(proto)
            added.add(proto.name)

    try:
        for name, ref in schema.references:
            proto = _file_proto(ref.text)
            if not proto.name:
                proto.name = name
            add(proto)
        main = _file_proto(schema.text)
        add(main)
        path = _message_path(main, list(indexes))
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(path))
    except RecordError:
        raise
    except (TypeError, KeyError, ValueError) as exc:
        raise RecordError(f"Protobuf schema cannot be loaded: {exc}") from None


def _add_well_known(pool, dependency: str) -> None:
    from google.protobuf import (  # noqa: PLC0415 - only the ones a schema imports
        any_pb2,
        duration_pb2,
        empty_pb2,
        field_mask_pb2,
        struct_pb2,
        timestamp_pb2,
        wrappers_pb2,
    )

    known = {
        m.DESCRIPTOR.name: m
        for m in (any_pb2, duration_pb2, empty_pb2, field_mask_pb2, struct_pb2, timestamp_pb2, wrappers_pb2)
    }
    if dependency in known:
        pool.AddSerializedFile(known[dependency].DESCRIPTOR.serialized_pb)


def _message_path(proto: descriptor_pb2.FileDescriptorProto, indexes: list[int]) -> str:
    messages = proto.message_type
    names = [proto.package] if proto.package else []
    for index in indexes:
        if index < 0 or index >= len(messages):
            raise RecordError(f"Protobuf: message index {index} is not in the schema")
        names.append(messages[index].name)
        messages_next = messages[index].nested_type
        messages = messages_next
    return ".".join(names)


def _protobuf_fields(text: str) -> dict[str, str]:
    # json_format names the field: 'Failed to parse qty field: ...' / 'has no field named "x"'
    for marker in (" field: ", "no field named "):
        if marker in text:
            head = text.split(marker)[0] if marker == " field: " else text.split(marker)[1]
            name = head.split()[-1].strip('"') if marker == " field: " else head.split()[0].strip('".')
            return {name: text}
    return {"payload_json": text}


# ---- JSON Schema -----------------------------------------------------------------------------


def _json_schema_document(schema: Schema):
    import jsonschema  # noqa: PLC0415 - only uploads and edits of JSON Schema records need it

    try:
        document = json.loads(schema.text)
        validator_class = jsonschema.validators.validator_for(document)
        validator_class.check_schema(document)
    except (ValueError, RecursionError, jsonschema.SchemaError) as exc:
        raise RecordError(f"JSON Schema does not load: {str(exc).splitlines()[0]}") from None
    return document, validator_class


def _validate_json(value, schema: Schema) -> None:
    document, validator_class = _json_schema_document(schema)
    errors = sorted(validator_class(document).iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        fields = {".".join(str(p) for p in e.absolute_path) or "payload_json": e.message for e in errors}
        raise RecordError(f"does not fit the JSON Schema: {errors[0].message}", fields=fields)
