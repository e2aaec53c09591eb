"""schemas/: the schema store (Avro, Protobuf descriptor sets, JSON Schema bound to sources)."""

from __future__ import annotations

from rest_framework import serializers

from dlqadmin.models import Source, StoredSchema
from dlqadmin.services.schemas import STORED_SCHEMA_FIELDS, stored_schema_save

from .base import ServiceWritesMixin, StrictMixin


class StoredSchemaSerializer(ServiceWritesMixin, StrictMixin, serializers.ModelSerializer):
    services = (stored_schema_save, stored_schema_save, "schema")

    sources = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=Source.objects.all(),
        required=False,
        help_text="Sources whose payloads it decodes.",
    )

    class Meta:
        model = StoredSchema
        fields = ["id", *STORED_SCHEMA_FIELDS, "sources", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {
            "definition": {
                "trim_whitespace": False,
                "help_text": "The .avsc or JSON Schema text; for Protobuf a FileDescriptorSet "
                "(protoc --include_imports --descriptor_set_out=x.desc), base64-encoded.",
            }
        }
