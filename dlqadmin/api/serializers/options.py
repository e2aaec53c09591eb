"""``options`` of connections and sources in the API: checked against the tables of
dlqadmin/broker_options.py (types, ranges, kind / mode), documented for the schema, secret-looking
values redacted in answers."""

from __future__ import annotations

import re

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from dlqadmin.broker_options import CONNECTION_OPTIONS, SOURCE_OPTIONS, Table, option_problems

from .base import reject_nul

__all__ = ["CONNECTION_OPTIONS", "SOURCE_OPTIONS", "require_valid_options"]

SECRET_OPTION = re.compile(r"password|secret|token|private|key\.pem|\.key$", re.IGNORECASE)
REDACTED = "***"


def redact(options: dict) -> dict:
    """Options as shown to clients: secret-looking values replaced by ``***``."""
    out = {}
    for key, value in (options or {}).items():
        if isinstance(value, dict):
            out[key] = redact(value)
        elif SECRET_OPTION.search(str(key)) and value not in (None, ""):
            out[key] = REDACTED
        else:
            out[key] = value
    return out


def keep_redacted(new: dict, old: dict) -> dict:
    """A client that sends back ``***`` keeps the stored secret."""
    out = {}
    for key, value in new.items():
        if value == REDACTED and key in (old or {}):
            out[key] = old[key]
        elif isinstance(value, dict) and isinstance((old or {}).get(key), dict):
            out[key] = keep_redacted(value, old[key])
        else:
            out[key] = value
    return out


def require_valid_options(options: dict, tables: dict[str, Table], chosen: str | None) -> None:
    """Raise a 400 naming ``options.<key>`` for each problem ``option_problems`` finds."""
    errors = option_problems(options, tables, chosen)
    if errors:
        raise serializers.ValidationError({f"options.{k}": v for k, v in errors.items()})


def _schema(tables: dict[str, Table], what: str) -> dict:
    types = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object"}
    properties: dict[str, dict] = {}
    for group, table in tables.items():
        for key, (kind, minimum, maximum, doc) in table.items():
            prop = properties.setdefault(key, {"type": types[kind], "description": ""})
            prop["description"] = (prop["description"] + f" [{group}] {doc}").strip()
            if minimum is not None:
                prop["minimum"] = minimum
            if maximum is not None:
                prop["maximum"] = maximum
    return {
        "type": "object",
        "additionalProperties": True,
        "description": f"{what} options; keys by {', '.join(tables)}. Other keys are passed to the adapter.",
        "properties": properties,
    }


class _OptionsObjectField(serializers.JSONField):
    """A JSON object without NUL characters."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object")
        return reject_nul(super().to_internal_value(data))


@extend_schema_field(_schema(CONNECTION_OPTIONS, "Kind-specific client"))
class ConnectionOptionsField(_OptionsObjectField):
    def to_representation(self, value):
        return redact(value or {})


@extend_schema_field(_schema(SOURCE_OPTIONS, "Mode-specific harvest"))
class SourceOptionsField(_OptionsObjectField):
    pass
