"""Kind- and mode-specific ``options`` of connections and sources: documented for the schema and
type-checked on input (a wrong type would otherwise fail deep inside an adapter). An option of
another kind or mode is refused; keys not listed anywhere here are accepted unchanged, so a new
adapter option needs no API change to be usable.
"""

from __future__ import annotations

import re

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .base import reject_nul

# key -> (type, minimum or None, description)
CONNECTION_OPTIONS: dict[str, dict[str, tuple[type, float | None, str]]] = {
    "rabbitmq": {
        "management_url": (str, None, "Management HTTP API for discovery (default http://<host>:15672)."),
        "publish_window": (int, 1, "Redrive publishes in flight at once (default 256)."),
    },
    "kafka": {
        "client": (dict, None, "Any librdkafka settings, applied after ours (e.g. ssl.endpoint...)."),
        "client_id": (str, None, "Kafka client.id (default dlqadmin)."),
        "security_protocol": (str, None, "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (default: derived)."),
        "sasl_mechanism": (str, None, "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default PLAIN)."),
        "idle_timeout": (float, 0, "Seconds without records after which a harvest stops."),
        "delivery_timeout": (float, 0, "Seconds to wait for acks=all delivery reports on redrive."),
        "linger_ms": (int, 0, "Producer linger.ms for redrive (default 5)."),
        "message_max_bytes": (int, 1, "Largest record the redrive producer sends."),
        "discover_include": (str, None, "Regular expression: only topics matching it are candidates."),
        "discover_headers": (bool, None, "Sample records to recognise dead-letter topics by headers."),
        "discover_sample_topics": (int, 0, "At most this many topics are sampled (default 50)."),
        "discover_sample_records": (int, 0, "Records sampled per partition (default 5)."),
        "discover_sample_seconds": (float, 0, "Seconds spent sampling (default 5)."),
    },
    "nats": {
        "domain": (str, None, "JetStream domain."),
        "api_prefix": (str, None, "JetStream API prefix (default $JS.API)."),
        "max_reconnect_attempts": (int, 1, "Reconnect attempts per server (default 1)."),
        "reconnect_time_wait": (float, 0, "Seconds between reconnect attempts (default 0.25)."),
        "client_name": (str, None, "Client name shown by the server (default dlqadmin)."),
        "redrive_window": (int, 1, "Redrive publishes in flight at once (default 256)."),
        "batch_max_bytes": (int, 1, "Largest harvest fetch in bytes (default 32 MiB)."),
        "token": (str, None, "Auth token (write-only: shown as *** in responses)."),
    },
}

_BATCH = (int, 1, "Messages stored per database transaction (default DLQADMIN_HARVEST_BATCH_SIZE).")
SOURCE_OPTIONS: dict[str, dict[str, tuple[type, float | None, str]]] = {
    "queue": {
        "batch_size": _BATCH,
        "prefetch": (int, 1, "AMQP prefetch while harvesting (default: the batch size)."),
        "idle_timeout": (float, 0, "Seconds without a message after which the queue counts as drained."),
    },
    "topic": {
        "batch_size": _BATCH,
        "group_id": (str, None, "Consumer group whose committed offsets are the harvest position."),
        "idle_timeout": (float, 0, "Seconds without records after which a harvest stops."),
    },
    "advisory": {
        "batch_size": _BATCH,
        "capture_stream": (str, None, "Stream that captures the advisories (default derived)."),
        "durable": (str, None, "Durable consumer name."),
        "max_age": (float, 0, "Seconds the capture stream keeps advisories (default 30 days)."),
        "replicas": (int, 1, "Replicas of the capture stream (default 1)."),
        "ack_wait": (float, 0, "Seconds before an unacknowledged fetch is redelivered."),
    },
    "dlq_stream": {
        "batch_size": _BATCH,
        "durable": (str, None, "Durable consumer name."),
        "filter_subject": (str, None, "Only harvest subjects matching this filter."),
        "delete_after_harvest": (bool, None, "Delete harvested messages from a Limits stream."),
        "strip_subject_prefix": (str, None, "Prefix removed to find the original subject."),
        "ack_wait": (float, 0, "Seconds before an unacknowledged fetch is redelivered."),
    },
    "subject": {
        "batch_size": _BATCH,
        "listen_seconds": (float, 0, "Seconds a harvest listens on the core NATS subject (default 1)."),
        "queue_group": (str, None, "Queue group to share the subject with other harvesters."),
    },
}

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


def check_options(options: dict, table: dict[str, tuple[type, float | None, str]]) -> dict[str, str]:
    """Type errors of the known keys in ``options`` (``{key: message}``)."""
    errors = {}
    for key, (kind, minimum, _doc) in table.items():
        if key not in options or options[key] is None:
            continue
        value = options[key]
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            errors[key] = f"must be {'a number' if kind is float else kind.__name__}"
        elif minimum is not None and value < minimum:
            errors[key] = f"must be at least {minimum:g}"
        elif kind is dict and not all(
            isinstance(v, str | int | float | bool) and not isinstance(v, dict) for v in value.values()
        ):
            errors[key] = "values must be strings, numbers or booleans"
    if isinstance(options.get("discover_include"), str):
        try:
            re.compile(options["discover_include"])
        except re.error as exc:
            errors["discover_include"] = f"not a regular expression: {exc}"
    return errors


def require_valid_options(
    options: dict, tables: dict[str, dict[str, tuple[type, float | None, str]]], chosen: str | None
) -> None:
    """Raise a 400 naming ``options.<key>`` for each known key of the wrong type or range, and for
    each key documented only for another kind (or mode): it would be stored and silently ignored.
    ``tables`` is CONNECTION_OPTIONS or SOURCE_OPTIONS, ``chosen`` the kind or mode."""
    table = tables.get(chosen or "", {})
    errors = check_options(options, table)
    for key in options:
        others = sorted(name for name, known in tables.items() if key in known)
        if key not in table and others:
            errors[key] = f"a {' / '.join(others)} option, not a {chosen} one"
    if errors:
        raise serializers.ValidationError({f"options.{k}": v for k, v in errors.items()})


def _schema(tables: dict[str, dict[str, tuple[type, float | None, str]]], what: str) -> dict:
    types = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object"}
    properties: dict[str, dict] = {}
    for group, table in tables.items():
        for key, (kind, minimum, doc) in table.items():
            prop = properties.setdefault(key, {"type": types[kind], "description": ""})
            prop["description"] = (prop["description"] + f" [{group}] {doc}").strip()
            if minimum is not None:
                prop["minimum"] = minimum
    return {
        "type": "object",
        "additionalProperties": True,
        "description": f"{what} options; keys by {', '.join(tables)}. Other keys are passed to the adapter.",
        "properties": properties,
    }


@extend_schema_field(_schema(CONNECTION_OPTIONS, "Kind-specific client"))
class ConnectionOptionsField(serializers.JSONField):
    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object")
        return reject_nul(super().to_internal_value(data))

    def to_representation(self, value):
        return redact(value or {})


@extend_schema_field(_schema(SOURCE_OPTIONS, "Mode-specific harvest"))
class SourceOptionsField(serializers.JSONField):
    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object")
        return reject_nul(super().to_internal_value(data))
