"""Connections (credentials write-only) and sources (mode checked against the connection kind).

The serializers check the shape of the input; create / update call the services
(dlqadmin.services.connections / sources), which validate the domain rules and audit. The view
passes ``actor`` and ``remote_addr`` through ``serializer.save(...)``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from dlqadmin.models import Connection, Source, SourceMode
from dlqadmin.selectors_dashboard import capability_names, kind_capabilities, source_capabilities
from dlqadmin.services.connection_health import health_age_seconds
from dlqadmin.services.connections import connection_create, connection_update
from dlqadmin.services.harvest.prepare import prepare_state
from dlqadmin.services.sources import (
    HARVEST_NOW_LIMIT,
    HARVEST_NOW_MAX,
    SOURCE_SETTINGS,
    source_create,
    source_update,
)
from dlqadmin.validators import control_character, registry_url_problem

from .base import ServiceWritesMixin, StrictMixin
from .options import (
    CONNECTION_OPTIONS,
    SOURCE_OPTIONS,
    ConnectionOptionsField,
    SourceOptionsField,
    keep_redacted,
    require_valid_options,
)

#: URL schemes each kind's client accepts (Kafka bootstrap lists usually have none)
SCHEMES = {"rabbitmq": {"amqp", "amqps"}, "nats": {"nats", "tls", "ws", "wss", ""}, "kafka": None}


def url_problem(kind: str, url: str) -> str | None:
    """Why ``url`` cannot be a ``kind`` connection (syntax only; reachability is health/)."""
    bad = control_character(url)
    if bad:
        return f"a URL may not contain control characters ({bad})"
    items = [item.strip() for item in url.split(",")]
    if not all(items):
        return "an empty server in the list"
    for item in items:
        try:
            parts = urlsplit(item if "://" in item else f"//{item}")
            parts.port  # noqa: B018 - raises ValueError when not a number in 0-65535
        except ValueError as exc:
            return f"{item!r}: {exc}"
        if not parts.hostname:
            return f"{item!r} names no host"
        allowed = SCHEMES.get(kind)
        if allowed is not None and parts.scheme not in allowed:
            shown = ", ".join(f"{s}://" for s in sorted(allowed) if s) or "none"
            return f"{item!r}: a {kind} URL starts with {shown}"
    return None


def _url_has_credentials(url: str) -> bool:
    for item in url.split(","):
        authority = item.strip().split("://", 1)[-1].split("/", 1)[0]
        if "@" in authority:
            return True
    return False


#: what the health checks and harvests record on a connection / a source: read-only in the API
_CONNECTION_STATE = (
    "health_status",
    "last_checked_at",
    "health_checked_by",
    "health_age_seconds",
    "last_error",
    "server_version",
    "latency_ms",
    "created_at",
    "updated_at",
)
_SOURCE_STATE = (
    "cursor",
    "harvested_total",
    "backlog",
    "last_harvest_at",
    "last_error",
    "last_error_at",
    "created_at",
    "updated_at",
)


def _secret(max_length: int, help_text: str, **extra) -> serializers.CharField:
    """A write-only secret: never returned, kept when omitted, cleared by '' (taken verbatim)."""
    return serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=max_length,
        trim_whitespace=False,
        help_text=help_text,
        **extra,
    )


class ConnectionSerializer(ServiceWritesMixin, StrictMixin, serializers.ModelSerializer):
    services = (connection_create, connection_update, "connection")

    password = _secret(
        1000,
        "Write-only; never returned. Omit to keep the stored password, '' to clear it.",
        style={"input_type": "password"},
    )
    tls_client_key = _secret(
        20000, "PEM private key; write-only. Omit to keep the stored key, '' to clear it."
    )
    schema_registry_secret = _secret(
        2000,
        "Schema Registry password (with schema_registry_username) or bearer token; write-only. "
        "Omit to keep the stored one, '' to clear it.",
        style={"input_type": "password"},
    )
    has_schema_registry_secret = serializers.SerializerMethodField(
        help_text="A Schema Registry password or token is stored."
    )
    has_password = serializers.BooleanField(read_only=True, help_text="A password is stored.")
    has_tls_client_key = serializers.SerializerMethodField(help_text="A TLS client key is stored.")
    capabilities = serializers.SerializerMethodField()
    health_age_seconds = serializers.SerializerMethodField(
        help_text="Seconds since the health was last recorded (by a harvest, a redrive, the beat "
        "check or a test); null when never."
    )
    options = ConnectionOptionsField(
        required=False, help_text="Kind-specific client options; secret-looking values are returned as ***."
    )

    class Meta:
        model = Connection
        fields = [
            "id",
            "name",
            "kind",
            "url",
            "username",
            "password",
            "has_password",
            "tls_enabled",
            "tls_verify",
            "tls_ca_cert",
            "tls_client_cert",
            "tls_client_key",
            "has_tls_client_key",
            "schema_registry_url",
            "schema_registry_username",
            "schema_registry_secret",
            "has_schema_registry_secret",
            "options",
            "capabilities",
            *_CONNECTION_STATE,
        ]
        read_only_fields = list(_CONNECTION_STATE)
        extra_kwargs = {"username": {"trim_whitespace": False}}

    def get_has_tls_client_key(self, obj) -> bool:
        return bool(obj.tls_client_key_encrypted)

    def get_health_age_seconds(self, obj) -> float | None:
        age = health_age_seconds(obj)
        return None if age is None else round(age, 1)

    def get_has_schema_registry_secret(self, obj) -> bool:
        return bool(obj.schema_registry_secret_encrypted)

    def validate_schema_registry_url(self, value: str) -> str:
        problem = registry_url_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value

    @extend_schema_field({"type": "array", "items": {"type": "string"}})
    def get_capabilities(self, obj) -> list[str]:
        """What the kind supports in its most capable mode; a source lists its own mode's."""
        return capability_names(kind_capabilities(obj.kind))

    def validate_url(self, value: str) -> str:
        if _url_has_credentials(value):
            raise serializers.ValidationError(
                "put credentials in username/password, not in the URL (the URL is shown to every viewer)"
            )
        return value

    def validate(self, attrs):
        kind = attrs.get("kind", getattr(self.instance, "kind", None))
        url = attrs.get("url", getattr(self.instance, "url", ""))
        problem = url_problem(kind, url) if kind else None
        if problem:
            raise serializers.ValidationError({"url": problem})
        options = attrs.get("options")
        if options is not None:
            if self.instance is not None:
                options = attrs["options"] = keep_redacted(options, self.instance.options or {})
            require_valid_options(options, CONNECTION_OPTIONS, kind)
        return attrs


class HealthSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    server_version = serializers.CharField(allow_blank=True)
    latency_ms = serializers.FloatField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    checked_at = serializers.DateTimeField(source="last_checked_at", allow_null=True, required=False)


class DiscoveredConsumerSerializer(serializers.Serializer):
    name = serializers.CharField()
    max_deliver = serializers.IntegerField(
        allow_null=True, help_text="Deliveries before a message is dead; null = unlimited."
    )


class DiscoveredSourceSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=SourceMode.choices)
    address = serializers.CharField()
    reason = serializers.CharField(help_text="Why it looks like a dead-letter location.")
    messages = serializers.IntegerField(allow_null=True)
    already_added = serializers.BooleanField()
    options = serializers.DictField(
        help_text="Suggested source options (needs_prepare: saving the source sets the broker up)."
    )
    consumers = DiscoveredConsumerSerializer(
        many=True,
        help_text="The location's consumers and their max_deliver (NATS streams; empty elsewhere).",
    )

    def to_representation(self, instance):
        options = dict(instance.options or {})
        already = bool(options.pop("already_added", False))
        return {
            "mode": instance.mode,
            "address": instance.address,
            "reason": instance.reason,
            "messages": instance.messages,
            "already_added": already,
            "options": options,
            "consumers": [{"name": c.name, "max_deliver": c.max_deliver} for c in instance.consumers],
        }


class SourcePrepareSerializer(serializers.Serializer):
    """Whether the broker is set up to capture the source's failures (NATS advisories)."""

    status = serializers.ChoiceField(
        choices=["", "pending", "ready", "failed"],
        help_text='"" when the mode needs nothing; pending (not prepared yet), ready or failed.',
    )
    detail = serializers.CharField(
        help_text="Where failures are captured (which stream, whether dlqadmin created it), or why not."
    )
    error = serializers.CharField(allow_blank=True, help_text="Why the last prepare failed.")
    prepared_at = serializers.DateTimeField(allow_null=True)
    options = serializers.DictField(
        help_text="What the harvest reads, found by prepare (e.g. capture_stream, durable); "
        "the source's own options override them."
    )

    def to_representation(self, instance):
        state = prepare_state(instance)
        at = instance.prepared_at
        return {
            "status": state.status,
            "detail": state.text,
            "error": instance.prepare_error,
            "prepared_at": serializers.DateTimeField().to_representation(at) if at else None,
            "options": dict(instance.prepared_options or {}),
        }


class SourceSerializer(ServiceWritesMixin, StrictMixin, serializers.ModelSerializer):
    services = (source_create, source_update, "source")

    connection = serializers.PrimaryKeyRelatedField(
        queryset=Connection.objects.all(), help_text="Id of the connection this source reads from."
    )
    connection_name = serializers.CharField(source="connection.name", read_only=True)
    kind = serializers.CharField(source="connection.kind", read_only=True)
    mode = serializers.ChoiceField(
        choices=SourceMode.choices,
        help_text="queue (RabbitMQ), topic (Kafka), advisory / dlq_stream / subject (NATS). "
        "Must be a mode of the connection's kind.",
    )
    address = serializers.CharField(
        max_length=500,
        help_text="queue: the dead-letter queue name. topic: the dead-letter topic. advisory: the "
        "stream whose max-deliveries / terminated advisories are captured (from when the source "
        "is prepared, on save while enabled: advisories sent before that are lost). dlq_stream: "
        "the application DLQ stream. subject: the core NATS DLQ subject.",
    )
    options = SourceOptionsField(required=False, help_text="Mode-specific harvest options.")
    capabilities = serializers.SerializerMethodField()
    prepare = SourcePrepareSerializer(
        source="*",
        read_only=True,
        help_text="Whether the broker is set up to capture failures (advisory sources): a failed "
        "prepare is also the source's last_error.",
    )

    class Meta:
        model = Source
        fields = [
            "id",
            "name",
            "connection",
            "connection_name",
            "kind",
            "mode",
            "address",
            *SOURCE_SETTINGS,
            "auto_retry_held",
            "capabilities",
            "prepare",
            *_SOURCE_STATE,
        ]
        read_only_fields = ["auto_retry_held", *_SOURCE_STATE]

    @extend_schema_field({"type": "array", "items": {"type": "string"}})
    def get_capabilities(self, obj) -> list[str]:
        """What this source's mode supports (a NATS ``subject`` source cannot peek, ...), as the
        dashboard shows it."""
        return capability_names(source_capabilities(obj))

    def validate(self, attrs):
        """Options per mode here; mode vs. kind and the unique location: source_validate."""
        mode = attrs.get("mode", getattr(self.instance, "mode", None))
        options = attrs.get("options")
        if options is not None and mode is not None:
            require_valid_options(options, SOURCE_OPTIONS, mode)
        return attrs


class HarvestRequestSerializer(StrictMixin, serializers.Serializer):
    limit = serializers.IntegerField(
        min_value=1,
        max_value=HARVEST_NOW_MAX,
        default=HARVEST_NOW_LIMIT,
        help_text=f"Harvest at most this many messages in this request (default {HARVEST_NOW_LIMIT}, "
        "like the dashboard's and the admin's harvest now); "
        "'exhausted' in the answer tells whether the source was drained.",
    )


class HarvestReportSerializer(serializers.Serializer):
    source = serializers.CharField()
    received = serializers.IntegerField()
    inserted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    backlog = serializers.IntegerField(allow_null=True)
    exhausted = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)


__all__ = [
    "ConnectionSerializer",
    "DiscoveredSourceSerializer",
    "HarvestReportSerializer",
    "HarvestRequestSerializer",
    "HealthSerializer",
    "SourcePrepareSerializer",
    "SourceSerializer",
]
