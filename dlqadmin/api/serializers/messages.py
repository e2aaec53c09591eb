"""Dead letters: compact list items, full detail (payload views, typed headers, origin, error,
history) and the bulk selection body shared with redrives. The decoded block and the edit (PATCH)
body are in :mod:`.message_edit`."""

from __future__ import annotations

import base64
import json

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from brokers import headers as header_codec
from dlqadmin.models import DeadLetter, DeadLetterStatus
from dlqadmin.selectors import DeadLetterFilter, FilterError
from dlqadmin.services.masking import MaskedMessage, Masker
from dlqadmin.services.redrive.options import MAX_SELECTION_IDS

from .base import IdListField, StrictSerializer, reject_nul
from .message_edit import DecodedSerializer, decoded_dict

ERROR_PREVIEW = 300
HISTORY_LIMIT = 100


def payload_views(raw: bytes | None) -> dict:
    """``{base64, text, json, format}`` of raw bytes: text when UTF-8, json when it parses."""
    if raw is None:
        return {"base64": None, "text": None, "json": None, "format": "none"}
    raw = bytes(raw)
    text = parsed = None
    fmt = "binary"
    try:
        text = raw.decode("utf-8")
        fmt = "text"
    except UnicodeDecodeError:
        pass
    if text is not None and text.strip():
        try:
            parsed = json.loads(text, parse_constant=_reject_constant)
            fmt = "json"
        except (ValueError, RecursionError):
            parsed = None
    return {"base64": base64.b64encode(raw).decode("ascii"), "text": text, "json": parsed, "format": fmt}


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _masker(context) -> Masker:
    """The requesting user's Masker, one per serializer context (rules looked up once per
    source). No request: the system's own serialization, unmasked."""
    if "_masker" not in context:
        request = context.get("request")
        context["_masker"] = Masker(request.user if request is not None else None)
    return context["_masker"]


def masked_view(context, letter: DeadLetter, *, payload=None, headers=None) -> MaskedMessage:
    """What the requesting user may see of ``letter`` (or of a revision's payload/headers):
    dlqadmin.services.masking decides, as for the dashboard and exports."""
    return _masker(context).message(letter, payload=payload, headers=headers)


def masked_text(context, source_id: int | None, text: str) -> str:
    return _masker(context).text(source_id, text)


def filter_from(data, *, prefix: str = "") -> DeadLetterFilter:
    """Parse the one filter language; errors keyed ``<prefix><field>``."""
    try:
        return DeadLetterFilter.parse(data)
    except FilterError as exc:
        raise FilterError({f"{prefix}{k}": v for k, v in exc.errors.items()}) from None


# ---- list ------------------------------------------------------------------------------------
class MessageListSerializer(serializers.ModelSerializer):
    source_name = serializers.CharField(source="source.name", read_only=True)
    destination = serializers.CharField(source="original_destination", read_only=True)
    error_message = serializers.SerializerMethodField()

    class Meta:
        model = DeadLetter
        fields = [
            "id",
            "source",
            "source_name",
            "status",
            "reason",
            "error_class",
            "error_message",
            "error_group",
            "destination",
            "payload_size",
            "payload_available",
            "retry_count",
            "redrive_count",
            "failed_at",
            "harvested_at",
        ]
        read_only_fields = fields

    def get_error_message(self, obj) -> str:
        """The first characters of the error message (the detail has all of it)."""
        return masked_text(self.context, obj.source_id, obj.error_message)[:ERROR_PREVIEW]


# ---- detail ----------------------------------------------------------------------------------
class HeaderSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField(help_text="Wire type: str, bytes, int, float, decimal, timestamp ...")
    value_text = serializers.CharField(help_text="Display text (never used to re-send).")
    node = serializers.DictField(help_text='Lossless typed value, e.g. {"t": "int", "v": 3}.')


def header_list(stored: list) -> list[dict]:
    texts = header_codec.text_pairs(stored or [])
    return [
        {"name": name, "type": kind, "value_text": text, "node": node}
        for (name, kind, text), (_n, node) in zip(texts, stored or [], strict=True)
    ]


class OriginSerializer(serializers.Serializer):
    exchange = serializers.CharField(source="origin_exchange")
    routing_key = serializers.CharField(source="origin_routing_key")
    queue = serializers.CharField(source="origin_queue")
    topic = serializers.CharField(source="origin_topic")
    partition = serializers.IntegerField(source="origin_partition", allow_null=True)
    offset = serializers.IntegerField(source="origin_offset", allow_null=True)
    stream = serializers.CharField(source="origin_stream")
    subject = serializers.CharField(source="origin_subject")
    seq = serializers.IntegerField(source="origin_seq", allow_null=True)
    extra = serializers.DictField(source="origin_extra")
    destination = serializers.CharField(source="original_destination")


class MessageErrorSerializer(serializers.Serializer):
    # "class" is a keyword: declared below through the fields dict
    message = serializers.CharField(source="error_message")
    stacktrace = serializers.CharField()
    reason = serializers.CharField()

    def get_fields(self):
        fields = super().get_fields()
        fields["class"] = serializers.CharField(source="error_class")
        return fields


class AttemptSerializer(serializers.Serializer):
    job = serializers.IntegerField(source="job_id")
    outcome = serializers.CharField(source="status", help_text="pending, claimed, succeeded, failed, skipped")
    error = serializers.CharField()
    destination = serializers.CharField()
    broker_position = serializers.CharField()
    tries = serializers.IntegerField()
    revision = serializers.IntegerField(source="revision_id", allow_null=True)
    claimed_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class RevisionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    note = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    payload_base64 = serializers.CharField(allow_null=True)
    payload_text = serializers.CharField(allow_null=True)
    headers = HeaderSerializer(many=True)

    def to_representation(self, instance):
        view = masked_view(
            self.context, instance.dead_letter, payload=bytes(instance.payload), headers=instance.headers
        )
        views = payload_views(view.payload)
        return {
            "id": instance.pk,
            "note": instance.note,
            "created_by": instance.created_by.get_username() if instance.created_by else None,
            "created_at": serializers.DateTimeField().to_representation(instance.created_at),
            "payload_base64": views["base64"],
            "payload_text": views["text"],
            "headers": header_list(view.headers),
        }


class HistorySerializer(serializers.Serializer):
    failed_at = serializers.DateTimeField()
    harvested_at = serializers.DateTimeField()
    redrive_attempts = AttemptSerializer(many=True, help_text=f"Newest first, at most {HISTORY_LIMIT}.")
    revisions = RevisionSerializer(many=True, help_text=f"Edits, newest first, at most {HISTORY_LIMIT}.")


class MessageDetailSerializer(serializers.ModelSerializer):
    source_name = serializers.CharField(source="source.name", read_only=True)
    kind = serializers.CharField(source="source.connection.kind", read_only=True)
    payload_masked = serializers.SerializerMethodField()
    payload_format = serializers.SerializerMethodField()
    payload_base64 = serializers.SerializerMethodField()
    payload_text = serializers.SerializerMethodField()
    payload_json = serializers.SerializerMethodField()
    key_base64 = serializers.SerializerMethodField()
    headers = serializers.SerializerMethodField()
    properties = serializers.SerializerMethodField()
    origin = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    read_notes = serializers.SerializerMethodField()
    decoded = serializers.SerializerMethodField()
    history = serializers.SerializerMethodField()

    class Meta:
        model = DeadLetter
        fields = [
            "id",
            "source",
            "source_name",
            "kind",
            "position",
            "status",
            "error_group",
            "payload_size",
            "payload_available",
            "payload_masked",
            "payload_format",
            "payload_base64",
            "payload_text",
            "payload_json",
            "key_base64",
            "headers",
            "properties",
            "origin",
            "error",
            "read_notes",
            "decoded",
            "retry_count",
            "redrive_count",
            "last_redriven_at",
            "history",
        ]
        read_only_fields = fields

    def _view(self, obj) -> tuple[MaskedMessage, dict]:
        cache = self.context.setdefault("_views", {})
        if obj.pk not in cache:
            view = masked_view(self.context, obj)
            cache[obj.pk] = (view, payload_views(view.payload))
        return cache[obj.pk]

    def get_payload_masked(self, obj) -> bool:
        """True when masking rules changed what this caller sees (payload, headers, error text)."""
        return self._view(obj)[0].masked

    @extend_schema_field(serializers.ChoiceField(choices=["json", "text", "binary"]))
    def get_payload_format(self, obj) -> str:
        return self._view(obj)[1]["format"]

    def get_payload_base64(self, obj) -> str:
        return self._view(obj)[1]["base64"]

    def get_payload_text(self, obj) -> str | None:
        """The payload as UTF-8 text; null when not valid UTF-8 (use payload_base64)."""
        return self._view(obj)[1]["text"]

    @extend_schema_field({"nullable": True, "description": "The payload parsed, when it is JSON."})
    def get_payload_json(self, obj):
        return self._view(obj)[1]["json"]

    def get_key_base64(self, obj) -> str | None:
        key = self._view(obj)[0].key
        if key is None:
            return None
        return base64.b64encode(key).decode("ascii")

    @extend_schema_field({"type": "object", "description": "Broker properties (masked for viewers)."})
    def get_properties(self, obj) -> dict:
        return self._view(obj)[0].properties or {}

    @extend_schema_field(HeaderSerializer(many=True))
    def get_headers(self, obj):
        return header_list(self._view(obj)[0].headers)

    @extend_schema_field(OriginSerializer)
    def get_origin(self, obj):
        return OriginSerializer(obj).data

    @extend_schema_field(MessageErrorSerializer)
    def get_error(self, obj):
        view = self._view(obj)[0]
        return {
            "class": obj.error_class,
            "message": view.error_message,
            "stacktrace": view.stacktrace,
            "reason": obj.reason,
        }

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_read_notes(self, obj) -> list[str]:
        """What the harvester could not read ("could not read <field>: <why>"); empty when all."""
        return [masked_text(self.context, obj.source_id, note) for note in obj.read_notes or []]

    @extend_schema_field(DecodedSerializer(allow_null=True))
    def get_decoded(self, obj):
        """The decoded payload with ``?decode=true`` (null otherwise)."""
        if not self.context.get("decode"):
            return None
        return decoded_dict(_masker(self.context).decoded(obj))

    @extend_schema_field(HistorySerializer)
    def get_history(self, obj):
        attempts = obj.redrive_attempts.order_by("-id")[:HISTORY_LIMIT]
        revisions = obj.revisions.select_related("created_by").order_by("-created_at", "-id")[:HISTORY_LIMIT]
        return {
            "failed_at": serializers.DateTimeField().to_representation(obj.failed_at),
            "harvested_at": serializers.DateTimeField().to_representation(obj.harvested_at),
            "redrive_attempts": AttemptSerializer(attempts, many=True).data,
            "revisions": RevisionSerializer(revisions, many=True, context=self.context).data,
        }


# ---- bulk selection --------------------------------------------------------------------------
#: the filter language (dlqadmin.selectors) as a JSON object, for the OpenAPI schema
_TEXTS = {"type": "array", "items": {"type": "string"}}
FILTER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "source": {**_TEXTS, "description": "Source ids or names."},
        "connection": {**_TEXTS, "description": "Connection ids or names."},
        "status": {"type": "array", "items": {"type": "string", "enum": DeadLetterStatus.values}},
        "reason": _TEXTS,
        "error_group": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}},
        "since": {"type": "string", "format": "date-time"},
        "until": {"type": "string", "format": "date-time"},
        "header": {"type": "array", "items": {"type": "string", "pattern": r"^[^:]*[^:\s][^:]*:"}},
        "q": {"type": "string", "maxLength": 500},
        "max_id": {"type": "integer", "minimum": -(2**63) + 1, "maximum": 2**63 - 1},
    },
}


@extend_schema_field(FILTER_SCHEMA)
class FilterField(serializers.DictField):
    pass


class SelectionSerializer(StrictSerializer):
    schema_rules = {"oneOf": [{"required": ["ids"]}, {"required": ["filter"]}]}

    ids = IdListField(required=False, help_text=f"Message ids (at most {MAX_SELECTION_IDS}).")
    filter = FilterField(
        required=False,
        help_text="The message filter language (same keys as the messages/ query string: source, "
        "connection, status, reason, error_group, since, until, header, q, max_id).",
    )

    def validate_filter(self, value):
        if not value:
            raise serializers.ValidationError(
                "an empty filter selects every message; give at least one key (e.g. status)"
            )
        return reject_nul(value)

    def validate(self, attrs):
        if ("ids" in attrs) == ("filter" in attrs):
            raise serializers.ValidationError({"ids": 'give exactly one of "ids" or "filter"'})
        if "filter" in attrs:
            attrs["filters"] = filter_from(attrs["filter"], prefix="filter.")
        return attrs

    @property
    def selection(self) -> dict:
        """``ids=`` / ``filters=`` keyword arguments for the services."""
        data = self.validated_data
        return {"ids": data.get("ids"), "filters": data.get("filters")}


class CountSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Messages changed.")


STATUS_CHOICES = DeadLetterStatus.choices
