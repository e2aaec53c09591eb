"""Error groups, audit events and API tokens."""

from __future__ import annotations

from rest_framework import serializers

from dlqadmin.models import ApiToken, AuditEvent, ErrorGroup, ErrorGroupStatus

from .base import StrictSerializer
from .messages import masked_text


class ErrorGroupSerializer(serializers.ModelSerializer):
    source_name = serializers.CharField(source="source.name", read_only=True, default=None)

    class Meta:
        model = ErrorGroup
        fields = [
            "id",
            "fingerprint",
            "source",
            "source_name",
            "error_class",
            "reason",
            "message_pattern",
            "sample_message",
            "count",
            "first_seen",
            "last_seen",
            "status",
            "status_changed_at",
            "auto_retry",
        ]
        read_only_fields = fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        for name in ("message_pattern", "sample_message"):  # error text: masked like messages
            data[name] = masked_text(self.context, instance.source_id, data[name])
        return data


class ErrorGroupStatusSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=ErrorGroupStatus.choices)


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "actor_name",
            "action",
            "target_type",
            "target_id",
            "count",
            "detail",
            "remote_addr",
        ]
        read_only_fields = fields


class TokenSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True)
    active = serializers.BooleanField(read_only=True, help_text="Not revoked.")

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "user", "created_at", "last_used_at", "revoked_at", "active"]
        read_only_fields = fields


class TokenCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, help_text="What the token is for, e.g. 'ci-redrive'.")


class TokenCreatedSerializer(TokenSerializer):
    key = serializers.SerializerMethodField(help_text="The key: shown only in this response, store it now.")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "key"]
        read_only_fields = fields

    def get_key(self, obj) -> str:
        return self.context["raw_key"]
