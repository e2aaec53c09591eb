"""API viewsets, one module per resource group (routes in dlqadmin/api/urls.py)."""

from .admin import AuditEventViewSet, ErrorGroupViewSet, TokenViewSet
from .connections import ConnectionViewSet, SourceViewSet
from .messages import MessageViewSet
from .redrives import RedriveViewSet
from .rules import AlertDeliveryViewSet, AlertRuleViewSet, MaskingRuleViewSet
from .schemas import StoredSchemaViewSet

__all__ = [
    "AlertDeliveryViewSet",
    "AlertRuleViewSet",
    "MaskingRuleViewSet",
    "AuditEventViewSet",
    "ConnectionViewSet",
    "ErrorGroupViewSet",
    "MessageViewSet",
    "RedriveViewSet",
    "SourceViewSet",
    "StoredSchemaViewSet",
    "TokenViewSet",
]
