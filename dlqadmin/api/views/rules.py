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


def crud_schemas(noun: str, article: str) -> dict:
    """The OpenAPI summaries of an admin-only CRUD viewset over ``noun`` (singular)."""
    summaries = {
        "list": f"List {noun}s",
        "retrieve": f"{article.capitalize()} {noun}",
        "create": f"Add {article} {noun}",
        "update": f"Replace {article} {noun}",
        "partial_update": f"Change {article} {noun}",
        "destroy": f"Delete {article} {noun}",
    }
    return {action: extend_schema(summary=f"{text} (admin)") for action, text in summaries.items()}


class _RuleViewSet(ServiceCrudMixin, ApiViewSet):
    # admin CRUD over one kind of rule; ``delete_rule`` is its service's delete (a comment, not a
    # docstring: the OpenAPI description stays ServiceCrudMixin's)
    delete_rule = None

    def perform_destroy(self, instance):
        self.delete_rule(actor=self.request.user, rule=instance, remote_addr=self.remote_addr())


@extend_schema_view(**crud_schemas("alert rule", "an"))
class AlertRuleViewSet(_RuleViewSet):
    queryset = AlertRule.objects.select_related("source").order_by("id")
    serializer_class = AlertRuleSerializer
    role_actions = _crud(roles.MANAGE_ALERTS)
    delete_rule = staticmethod(alert_rule_delete)


@extend_schema_view(
    list=extend_schema(summary="Alerts sent or attempted, newest first (sent / failed with the reason)"),
    retrieve=extend_schema(summary="One alert delivery"),
)
class AlertDeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = AlertDelivery.objects.select_related("rule").order_by("-id")
    serializer_class = AlertDeliverySerializer
    role_actions = {"list": roles.VIEW_AUDIT, "retrieve": roles.VIEW_AUDIT}


@extend_schema_view(**crud_schemas("masking rule", "a"))
class MaskingRuleViewSet(_RuleViewSet):
    queryset = MaskingRule.objects.prefetch_related("sources").order_by("id")
    serializer_class = MaskingRuleSerializer
    role_actions = _crud(roles.MANAGE_MASKING)
    delete_rule = staticmethod(masking_rule_delete)
