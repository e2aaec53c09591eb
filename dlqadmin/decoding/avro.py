"""Avro records without a container: read with fastavro into their JSON form, and the JSON form
(edited) checked field by field and written back.

The JSON form is ``formats.jsonable`` of what fastavro reads: bytes and fixed are
``{"$bytes": "<base64>"}``, timestamps and dates ISO-8601 text, decimals and UUIDs text. ``write``
turns those back guided by the schema (``_from_json``), so an unchanged value re-encodes to the
same bytes.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import io
import json
import uuid

import fastavro
import fastavro.validation

from .formats import jsonable


class AvroError(ValueError):
    def __init__(self, message: str, *, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.fields = fields or {}


def parse(text: str, references: tuple[str, ...] = ()):
    """The parsed schema (``references``: the texts of the named types it uses, dependencies first)."""
    named: dict = {}
    try:
        for ref in references:
            fastavro.parse_schema(json.loads(ref), named_schemas=named)
        return fastavro.parse_schema(json.loads(text), named_schemas=named)
    except Exception as exc:  # noqa: BLE001 - fastavro raises many types (UnknownType, ...)
        raise AvroError(f"Avro schema does not parse: {exc}") from None


def read(body: bytes, parsed):
    stream = io.BytesIO(body)
    try:
        value = fastavro.schemaless_reader(stream, parsed, None)
    except (EOFError, StopIteration, IndexError):
        raise AvroError("Avro: the record ends early (truncated)") from None
    except Exception as exc:  # noqa: BLE001 - fastavro raises many types for bad input
        raise AvroError(f"Avro: {exc}") from None
    if stream.tell() != len(body):
        raise AvroError(f"Avro: {len(body) - stream.tell()} bytes left after the record (not this schema)")
    return jsonable(value)


def write(value, parsed) -> bytes:
    named = parsed.get("__named_schemas", {}) if isinstance(parsed, dict) else {}
    problems = _avro_problems(value, parsed, named, "")
    if problems:
        shown = "; ".join(f"{k}: {v}" for k, v in problems.items())
        raise AvroError(f"Avro: does not fit the schema: {shown}", fields=problems)
    out = io.BytesIO()
    try:
        fastavro.schemaless_writer(out, parsed, _from_json(value, parsed, named))
    except (TypeError, ValueError, KeyError, AttributeError, ArithmeticError) as exc:
        raise AvroError(f"Avro: {exc}", fields={"payload_json": str(exc)}) from None
    return out.getvalue()


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _resolve(schema, named: dict):
    return named.get(schema, schema) if isinstance(schema, str) else schema


def _from_json(value, schema, named: dict, depth: int = 0):
    """``value`` in its JSON form as the Python value fastavro writes for ``schema``."""
    schema = _resolve(schema, named)
    if depth > 100:
        return value
    if isinstance(schema, list):
        for branch in schema:
            converted = _from_json(value, branch, named, depth + 1)
            if fastavro.validation.validate(converted, _resolve(branch, named), raise_errors=False):
                return converted
        return value
    if not isinstance(schema, dict):
        return _leaf(value, schema, None)
    kind = schema.get("type")
    if kind == "record" and isinstance(value, dict):
        fields = {f["name"]: f["type"] for f in schema["fields"]}
        return {k: _from_json(v, fields[k], named, depth + 1) if k in fields else v for k, v in value.items()}
    if kind == "array" and isinstance(value, list):
        return [_from_json(v, schema["items"], named, depth + 1) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _from_json(v, schema["values"], named, depth + 1) for k, v in value.items()}
    return _leaf(value, kind, schema.get("logicalType"))


#: logical types whose JSON form is text that ``_leaf`` turns back into their value
FROM_TEXT = {
    "timestamp-millis",
    "timestamp-micros",
    "local-timestamp-millis",
    "local-timestamp-micros",
    "date",
    "time-millis",
    "time-micros",
    "decimal",
    "uuid",
}


def _leaf(value, kind, logical):
    try:
        if kind in ("bytes", "fixed") and isinstance(value, dict) and set(value) == {"$bytes"}:
            return base64.b64decode(str(value["$bytes"]).encode("ascii"), validate=True)
        if not isinstance(value, str):
            return value
        if logical in (
            "timestamp-millis",
            "timestamp-micros",
            "local-timestamp-millis",
            "local-timestamp-micros",
        ):
            return dt.datetime.fromisoformat(value)
        if logical == "date":
            return dt.date.fromisoformat(value)
        if logical in ("time-millis", "time-micros"):
            return dt.time.fromisoformat(value)
        if logical == "decimal":
            return decimal.Decimal(value)
        if logical == "uuid":
            return uuid.UUID(value)
    except (ValueError, binascii.Error, decimal.InvalidOperation, UnicodeEncodeError):
        return value  # left as given: the check names the field
    return value


def _avro_problems(value, schema, named: dict, path: str, depth: int = 0) -> dict[str, str]:
    """``{dotted path: what is wrong}`` for ``value`` against a parsed Avro schema (the paths are
    the JSON paths masking rules use, e.g. ``card.number``, ``lines.0.qty``)."""
    where = path or "payload_json"
    if depth > 100:
        return {where: "nested too deeply"}
    schema = _resolve(schema, named)
    if isinstance(schema, list):
        for branch in schema:
            if not _avro_problems(value, branch, named, path, depth + 1):
                return {}
        return {where: f"{_shown(value)} is none of {_avro_type(schema)}"}
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind == "record":
        if not isinstance(value, dict):
            return {where: f"must be an object (record {schema.get('name')})"}
        problems: dict[str, str] = {}
        names = [f["name"] for f in schema["fields"]]
        for key in value:
            if key not in names:
                problems[_join(path, key)] = f"not a field of {schema.get('name')}"
        for field_ in schema["fields"]:
            sub = _join(path, field_["name"])
            if field_["name"] in value:
                problems.update(_avro_problems(value[field_["name"]], field_["type"], named, sub, depth + 1))
            elif "default" not in field_:
                problems[sub] = "is required"
        return problems
    if kind == "array":
        if not isinstance(value, list):
            return {where: "must be a list"}
        problems = {}
        for i, item in enumerate(value):
            problems.update(_avro_problems(item, schema["items"], named, _join(path, i), depth + 1))
        return problems
    if kind == "map":
        if not isinstance(value, dict):
            return {where: "must be an object (map)"}
        problems = {}
        for key, item in value.items():
            problems.update(_avro_problems(item, schema["values"], named, _join(path, key), depth + 1))
        return problems
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    converted = _leaf(value, kind if kind else schema, logical)
    if logical in FROM_TEXT and isinstance(value, str) and converted is value:
        return {where: f"{_shown(value)} is not a {logical} (ISO-8601 / number text)"}
    try:
        ok = fastavro.validation.validate(converted, schema, raise_errors=False)
    except Exception:  # noqa: BLE001 - an odd leaf schema: let the writer decide
        ok = True
    return {} if ok else {where: f"{_shown(value)} is not {_avro_type(schema)}"}


def _shown(value) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _avro_type(schema) -> str:
    if isinstance(schema, dict):
        logical = schema.get("logicalType")
        return f"{schema.get('type')} ({logical})" if logical else str(schema.get("type"))
    if isinstance(schema, list):
        return " or ".join(_avro_type(s) for s in schema)
    return str(schema)
