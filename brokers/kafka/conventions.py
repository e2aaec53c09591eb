"""What a Kafka dead letter's headers say about where it came from and why it failed.

Kafka has no native dead-lettering; frameworks leave context in record headers. The format is
detected from the headers, never from the topic name:

``spring``               Spring Kafka ``DeadLetterPublishingRecoverer``: ``kafka_dlt-*``, with
                         binary big-endian partition (4 bytes) / offset and timestamp (8 bytes).
                         ``appendOriginalHeaders`` repeats them on re-dead-lettering: the LAST
                         is the newest.
``connect``              Kafka Connect sink DLQ with ``errors.deadletterqueue.context.headers.enable``:
                         ``__connect.errors.*`` UTF-8 strings.
``spring-cloud-stream``  Spring Cloud Stream Kafka binder DLQ: ``x-original-*`` /
                         ``x-exception-*``. Integer encodings vary by version, so both decimal
                         strings and big-endian binary are read. (A record this tool redrove
                         carries ``x-original-*`` as decimal strings and reads the same way.)
``plain``                no context: the origin is unknown and the operator chooses a destination.

Pure functions over the tagged header list of :mod:`brokers.headers`; no client library here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from brokers import headers as h
from brokers.base import Origin

SPRING = "kafka_dlt-"
CONNECT = "__connect.errors."
CLOUD_STREAM = ("x-exception-", "x-original-")
RETRY_TOPIC_ATTEMPTS = "retry_topic-attempts"

_DECIMAL = re.compile(r'\s*"?([-+]?\d+)"?\s*')


@dataclass
class DeadLetterContext:
    format: str
    origin: Origin = field(default_factory=Origin)
    reason: str = "unknown"
    error_class: str = ""
    error_message: str = ""
    stacktrace: str = ""


class _Index:
    """The LAST node of each header name, by lower-cased name, decoded when asked for: one pass
    over the headers instead of a case-insensitive scan per lookup (a Spring record has ~13
    lookups over ~12 headers; that was a third of a Kafka harvest's CPU, issue 15)."""

    __slots__ = ("nodes",)

    def __init__(self, headers: list):
        self.nodes = {name.lower(): node for name, node in headers}  # a repeated name: the last

    def get(self, name: str) -> Any:
        node = self.nodes.get(name.lower())
        return None if node is None else h.decode_value(node)


def parse(headers: list) -> DeadLetterContext:
    """The dead-letter context of one record, from its encoded headers (``[[name, node], ...]``)."""
    index = _Index(headers)
    names = index.nodes
    if any(n.startswith(SPRING) for n in names):
        return _spring(index)
    if any(n.startswith(CONNECT) for n in names):
        return _connect(index)
    if any(n.startswith(CLOUD_STREAM) for n in names):
        return _cloud_stream(index)
    return DeadLetterContext(format="plain", origin=Origin(extra={"format": "plain"}))


# --------------------------------------------------------------------------------------------
# Formats


def _spring(headers: _Index) -> DeadLetterContext:
    extra: dict[str, Any] = {"format": "spring"}
    origin = Origin(
        topic=text(headers, SPRING + "original-topic"),
        partition=binary_int(headers.get(SPRING + "original-partition")),
        offset=binary_int(headers.get(SPRING + "original-offset")),
        extra=extra,
    )
    _put(extra, "consumer_group", text(headers, SPRING + "original-consumer-group"))
    _put(extra, "original_timestamp", binary_int(headers.get(SPRING + "original-timestamp")))
    _put(extra, "original_timestamp_type", text(headers, SPRING + "original-timestamp-type"))
    _put(extra, "attempts", binary_int(headers.get(RETRY_TOPIC_ATTEMPTS)))
    context = DeadLetterContext(format="spring", origin=origin)

    fqcn = text(headers, SPRING + "exception-fqcn")
    cause = text(headers, SPRING + "exception-cause-fqcn")
    key_fqcn = text(headers, SPRING + "key-exception-fqcn")
    if fqcn or cause:
        context.reason = "exception"
        # The root cause says what went wrong; the fqcn is usually Spring's wrapper exception.
        context.error_class = cause or fqcn
        context.error_message = text(headers, SPRING + "exception-message")
        context.stacktrace = text(headers, SPRING + "exception-stacktrace")
        _put(extra, "exception_fqcn", fqcn if cause and fqcn != cause else "")
    elif key_fqcn:
        context.reason = "key-exception"
        context.error_class = key_fqcn
        context.error_message = text(headers, SPRING + "key-exception-message")
        context.stacktrace = text(headers, SPRING + "key-exception-stacktrace")
    return context


def _connect(headers: _Index) -> DeadLetterContext:
    def get(name: str) -> str:
        return text(headers, CONNECT + name)

    extra: dict[str, Any] = {"format": "connect"}
    _put(extra, "connector", get("connector.name"))
    task = get("task.id")
    _put(extra, "task", decimal_int(task) if decimal_int(task) is not None else task)
    _put(extra, "stage", get("stage"))
    _put(extra, "class_name", get("class.name"))
    origin = Origin(
        topic=get("topic"),
        partition=decimal_int(get("partition")),
        offset=decimal_int(get("offset")),
        extra=extra,
    )
    return DeadLetterContext(
        format="connect",
        origin=origin,
        reason=get("stage").lower() or "unknown",
        error_class=get("exception.class.name"),
        error_message=get("exception.message"),
        stacktrace=get("exception.stacktrace"),
    )


def _cloud_stream(headers: _Index) -> DeadLetterContext:
    extra: dict[str, Any] = {"format": "spring-cloud-stream"}
    origin = Origin(
        topic=text(headers, "x-original-topic"),
        partition=tolerant_int(headers.get("x-original-partition")),
        offset=tolerant_int(headers.get("x-original-offset")),
        extra=extra,
    )
    _put(extra, "original_timestamp", tolerant_int(headers.get("x-original-timestamp")))
    _put(extra, "original_timestamp_type", text(headers, "x-original-timestamp-type"))
    fqcn = text(headers, "x-exception-fqcn")
    message = text(headers, "x-exception-message")
    return DeadLetterContext(
        format="spring-cloud-stream",
        origin=origin,
        reason="exception" if fqcn or message else "unknown",
        error_class=fqcn,
        error_message=message,
        stacktrace=text(headers, "x-exception-stacktrace"),
    )


# --------------------------------------------------------------------------------------------
# Value decoding (header values arrive as bytes, or None for a null header)


def _put(extra: dict[str, Any], name: str, value: Any) -> None:
    if value not in (None, ""):
        extra[name] = value


def text(headers: _Index, name: str) -> str:
    """The LAST header called ``name`` as text ("" when absent or null); invalid UTF-8 is replaced."""
    return h.as_text(headers.get(name))


def decimal_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return None
    match = _DECIMAL.fullmatch(str(value))
    return int(match.group(1)) if match else None


def binary_int(value: Any) -> int | None:
    """Spring's Java ints/longs: 4 or 8 bytes big-endian, signed. Falls back to decimal text."""
    if isinstance(value, bytes | bytearray) and len(value) in (4, 8):
        return int.from_bytes(value, "big", signed=True)
    return decimal_int(value)


def tolerant_int(value: Any) -> int | None:
    """Decimal text first (Spring Cloud Stream via JSON, this tool's redrives), then binary."""
    number = decimal_int(value)
    if number is not None:
        return number
    return binary_int(value)
