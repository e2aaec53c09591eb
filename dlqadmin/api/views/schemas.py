"""schemas/: the schema store (admins write; everyone who may read messages may list them)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_view
from rest_framework.parsers import MultiPartParser

from dlqadmin import permissions as roles
from dlqadmin.api.parsers import PARSER_CLASSES
from dlqadmin.api.serializers.schemas import StoredSchemaSerializer
from dlqadmin.models import StoredSchema
from dlqadmin.services.schemas import stored_schema_delete

from .base import ApiViewSet
from .connections import ServiceCrudMixin
from .rules import crud_schemas


@extend_schema_view(**crud_schemas("stored schema", "a"))
class StoredSchemaViewSet(ServiceCrudMixin, ApiViewSet):
    queryset = StoredSchema.objects.prefetch_related("sources").order_by("id")
    serializer_class = StoredSchemaSerializer
    parser_classes = [*PARSER_CLASSES, MultiPartParser]  # multipart: several .proto files
    role_actions = {
        "list": roles.VIEW,
        "retrieve": roles.VIEW,
        "create": roles.MANAGE_CONNECTIONS,
        "update": roles.MANAGE_CONNECTIONS,
        "partial_update": roles.MANAGE_CONNECTIONS,
        "destroy": roles.MANAGE_CONNECTIONS,
    }

    def perform_destroy(self, instance):
        stored_schema_delete(actor=self.request.user, schema=instance, remote_addr=self.remote_addr())
