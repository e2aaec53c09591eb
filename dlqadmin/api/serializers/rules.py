"""Alert rules, alert deliveries and masking rules."""

from __future__ import annotations

from rest_framework import serializers

from dlqadmin.models import AlertDelivery, AlertRule, MaskingRule, Source
from dlqadmin.services.rules import ALERT_RULE_FIELDS, alert_rule_save, masking_rule_save

from .base import ServiceWritesMixin, StrictMixin


class AlertRuleSerializer(ServiceWritesMixin, StrictMixin, serializers.ModelSerializer):
    services = (alert_rule_save, alert_rule_save, "rule")

    class Meta:
        model = AlertRule
        fields = ["id", *ALERT_RULE_FIELDS, "created_at"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {
            "target": {"help_text": "Webhook URL (http/https) or comma-separated email addresses."},
            "threshold": {"help_text": "backlog: messages waiting; failure_rate: failures per window."},
        }


class AlertDeliverySerializer(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name", read_only=True)

    class Meta:
        model = AlertDelivery
        fields = [
            "id",
            "rule",
            "rule_name",
            "subject",
            "payload",
            "status",
            "attempts",
            "error",
            "created_at",
            "sent_at",
        ]
        read_only_fields = fields


class MaskingRuleSerializer(ServiceWritesMixin, StrictMixin, serializers.ModelSerializer):
    services = (masking_rule_save, masking_rule_save, "rule")

    sources = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=Source.objects.all(),
        required=False,
        help_text="Limit the rule to these sources (empty: every source).",
    )

    class Meta:
        model = MaskingRule
        fields = ["id", "name", "kind", "pattern", "replacement", "sources", "enabled", "created_at"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {
            "pattern": {
                "help_text": "json_path: dotted keys (`*` any key, `**.` any depth), e.g. "
                "customer.email or **.password; regex: a Python regular expression; "
                "header: a header name (case-insensitive)."
            },
        }
