"""alert-rules/, alert-deliveries/ (read-only) and masking-rules/ (admins)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins

from dlqadmin import permissions as roles
from dlqadmin.api.serializers.rules import AlertDeliverySerializer, AlertRuleSerializer, MaskingRuleSerializer
from dlqadmin.models import AlertDelivery, AlertRule, MaskingRule
from dlqadmin.services.rules import alert_rule_delete, masking_rule_delete

from .base import ApiViewSet
from .connections import ServiceCrudMixin


def _crud(permission: str) -> dict[str, str]:
    return {a: permission for a in ("list", "retrieve", "create", "update", "partial_update", "destroy")}


@extend_schema_view(
    list=extend_schema(summary="List alert rules (admin)"),
    retrieve=extend_schema(summary="An alert rule (admin)"),
    create=extend_schema(summary="Add an alert rule (admin)"),
    update=extend_schema(summary="Replace an alert rule (admin)"),
    partial_update=extend_schema(summary="Change an alert rule (admin)"),
    destroy=extend_schema(summary="Delete an alert rule (admin)"),
)
class AlertRuleViewSet(ServiceCrudMixin, ApiViewSet):
    queryset = AlertRule.objects.select_related("source").order_by("id")
    serializer_class = AlertRuleSerializer
    role_actions = _crud(roles.MANAGE_ALERTS)

    def perform_destroy(self, instance):
        alert_rule_delete(actor=self.request.user, rule=instance, remote_addr=self.remote_addr())


@extend_schema_view(
    list=extend_schema(summary="Alerts sent or attempted, newest first (sent / failed with the reason)"),
    retrieve=extend_schema(summary="One alert delivery"),
)
class AlertDeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = AlertDelivery.objects.select_related("rule").order_by("-id")
    serializer_class = AlertDeliverySerializer
    role_actions = {"list": roles.VIEW_AUDIT, "retrieve": roles.VIEW_AUDIT}


@extend_schema_view(
    list=extend_schema(summary="List masking rules (admin)"),
    retrieve=extend_schema(summary="A masking rule (admin)"),
    create=extend_schema(summary="Add a masking rule (admin)"),
    update=extend_schema(summary="Replace a masking rule (admin)"),
    partial_update=extend_schema(summary="Change a masking rule (admin)"),
    destroy=extend_schema(summary="Delete a masking rule (admin)"),
)
class MaskingRuleViewSet(ServiceCrudMixin, ApiViewSet):
    queryset = MaskingRule.objects.prefetch_related("sources").order_by("id")
    serializer_class = MaskingRuleSerializer
    role_actions = _crud(roles.MANAGE_MASKING)

    def perform_destroy(self, instance):
        masking_rule_delete(actor=self.request.user, rule=instance, remote_addr=self.remote_addr())
