"""Kind- and mode-specific ``options`` of connections and sources: their types and ranges, checked
on input by the API serializers and the dashboard forms alike (a wrong type or an absurd number
would otherwise fail deep inside an adapter, or make a one-shot call wait for ever). An option of
another kind or mode is refused; keys not listed here are accepted unchanged, so a new adapter
option needs no change here to be usable.
"""

from __future__ import annotations

import re

from dlqadmin.decoding.chain import PAYLOAD_FORMATS

Table = dict[str, tuple[type, float | None, float | None, str]]

# key -> (type, minimum or None, maximum or None, description); the maxima keep a one-shot call
# (health, discover, harvest now) bounded and inside what the client libraries accept
CONNECTION_OPTIONS: dict[str, Table] = {
    "rabbitmq": {
        "management_url": (
            str,
            None,
            None,
            "Management HTTP API for discovery (default http://<host>:15672).",
        ),
        "publish_window": (int, 1, 65_535, "Redrive publishes in flight at once (default 256)."),
    },
    "kafka": {
        "client": (dict, None, None, "Any librdkafka settings, applied after ours (e.g. ssl.endpoint...)."),
        "client_id": (str, None, None, "Kafka client.id (default dlqadmin)."),
        "security_protocol": (
            str,
            None,
            None,
            "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (default derived).",
        ),
        "sasl_mechanism": (str, None, None, "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default PLAIN)."),
        "idle_timeout": (float, 0, 3600, "Seconds without records after which a harvest stops."),
        "delivery_timeout": (float, 0, 3600, "Seconds to wait for acks=all delivery reports on redrive."),
        "linger_ms": (int, 0, 900_000, "Producer linger.ms for redrive (default 5)."),
        "message_max_bytes": (int, 1, 1_000_000_000, "Largest record the redrive producer sends."),
        "discover_include": (str, None, None, "Regular expression: only topics matching it are candidates."),
        "discover_headers": (bool, None, None, "Sample records to recognise dead-letter topics by headers."),
        "discover_sample_topics": (int, 0, 10_000, "At most this many topics are sampled (default 50)."),
        "discover_sample_records": (int, 0, 10_000, "Records sampled per partition (default 5)."),
        "discover_sample_seconds": (float, 0, 300, "Seconds spent sampling (default 5)."),
    },
    "nats": {
        "domain": (str, None, None, "JetStream domain."),
        "api_prefix": (str, None, None, "JetStream API prefix (default $JS.API)."),
        "max_reconnect_attempts": (int, 1, 100, "Reconnect attempts per server (default 1)."),
        "reconnect_time_wait": (float, 0, 60, "Seconds between reconnect attempts (default 0.25)."),
        "client_name": (str, None, None, "Client name shown by the server (default dlqadmin)."),
        "redrive_window": (int, 1, 65_535, "Redrive publishes in flight at once (default 256)."),
        "batch_max_bytes": (int, 1, 1_073_741_824, "Largest harvest fetch in bytes (default 32 MiB)."),
        "token": (str, None, None, "Auth token (write-only: shown as *** in responses)."),
    },
}

_BATCH = (int, 1, 100_000, "Messages stored per database transaction (default DLQADMIN_HARVEST_BATCH_SIZE).")
#: read time only (dlqadmin/decoding): how the dashboard and API decode this source's payloads
_FORMAT = (str, None, None, f"Payload decoding: {', '.join(PAYLOAD_FORMATS)} (default auto).")
SOURCE_OPTIONS: dict[str, Table] = {
    "queue": {
        "batch_size": _BATCH,
        "payload_format": _FORMAT,
        "prefetch": (int, 1, 65_535, "AMQP prefetch while harvesting (default: the batch size)."),
        "idle_timeout": (
            float,
            0,
            3600,
            "Seconds without a message before the queue counts as drained.",
        ),
    },
    "topic": {
        "batch_size": _BATCH,
        "payload_format": _FORMAT,
        "group_id": (str, None, None, "Consumer group whose committed offsets are the harvest position."),
        "idle_timeout": (float, 0, 3600, "Seconds without records after which a harvest stops."),
    },
    "advisory": {
        "batch_size": _BATCH,
        "payload_format": _FORMAT,
        "capture_stream": (str, None, None, "Stream that captures the advisories (default derived)."),
        "durable": (str, None, None, "Durable consumer name."),
        "max_age": (float, 0, 315_360_000, "Seconds the capture stream keeps advisories (default 30 days)."),
        "replicas": (int, 1, 5, "Replicas of the capture stream (default 1)."),
        "ack_wait": (float, 0, 86_400, "Seconds before an unacknowledged fetch is redelivered."),
    },
    "dlq_stream": {
        "batch_size": _BATCH,
        "payload_format": _FORMAT,
        "durable": (str, None, None, "Durable consumer name."),
        "filter_subject": (str, None, None, "Only harvest subjects matching this filter."),
        "delete_after_harvest": (bool, None, None, "Delete harvested messages from a Limits stream."),
        "strip_subject_prefix": (str, None, None, "Prefix removed to find the original subject."),
        "ack_wait": (float, 0, 86_400, "Seconds before an unacknowledged fetch is redelivered."),
    },
    "subject": {
        "batch_size": _BATCH,
        "payload_format": _FORMAT,
        "listen_seconds": (float, 0, 3600, "Seconds a harvest listens on the core NATS subject (default 1)."),
        "queue_group": (str, None, None, "Queue group to share the subject with other harvesters."),
    },
}


def check_options(options: dict, table: Table) -> dict[str, str]:
    """Type errors of the known keys in ``options`` (``{key: message}``)."""
    errors = {}
    for key, (kind, minimum, maximum, _doc) in table.items():
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
            errors[key] = f"must be at least {_shown(minimum)}"
        elif maximum is not None and value > maximum:
            errors[key] = f"must be at most {_shown(maximum)}"
        elif kind is dict and not all(
            isinstance(v, str | int | float | bool) and not isinstance(v, dict) for v in value.values()
        ):
            errors[key] = "values must be strings, numbers or booleans"
    if "payload_format" in table and options.get("payload_format") not in (None, *PAYLOAD_FORMATS):
        errors["payload_format"] = f"one of {', '.join(PAYLOAD_FORMATS)}"
    if isinstance(options.get("discover_include"), str):
        try:
            re.compile(options["discover_include"])
        except re.error as exc:
            errors["discover_include"] = f"not a regular expression: {exc}"
    return errors


def _shown(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def option_problems(options: dict, tables: dict[str, Table], chosen: str | None) -> dict[str, str]:
    """``{key: message}`` for each known key of the wrong type or range, and for each key
    documented only for another kind (or mode): it would be stored and silently ignored.
    ``tables`` is CONNECTION_OPTIONS or SOURCE_OPTIONS, ``chosen`` the kind or mode."""
    table = tables.get(chosen or "", {})
    errors = check_options(options, table)
    for key in options:
        others = sorted(name for name, known in tables.items() if key in known)
        if key not in table and others:
            errors[key] = f"a {' / '.join(others)} option, not a {chosen} one"
    return errors
