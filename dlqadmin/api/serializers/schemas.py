"""schemas/: the schema store (Avro, Protobuf descriptor sets, JSON Schema bound to sources)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from dlqadmin.models import Source, StoredSchema
from dlqadmin.services.schemas import STORED_SCHEMA_FIELDS, stored_schema_save

from .base import ServiceWritesMixin, StrictMixin


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
class ProtoFilesField(serializers.Field):
    """.proto files by name: a JSON object of file name -> text, or (multipart) several files
    uploaded under the one field name. Checked and compiled by the service."""

    default_error_messages = {
        "invalid": "a mapping of .proto file name to its text",
        "not_text": "{name}: not UTF-8 text",
        "too_large": "{name}: larger than {limit} bytes",
    }
    MAX_UPLOAD = 1024 * 1024

    def get_value(self, dictionary):
        if hasattr(dictionary, "getlist") and self.field_name in dictionary:
            return list(dictionary.getlist(self.field_name))  # multipart: the uploaded files
        return super().get_value(dictionary)

    def to_internal_value(self, data):
        if isinstance(data, list):
            files = {}
            for upload in data:
                name = getattr(upload, "name", None)
                if name is None:
                    self.fail("invalid")
                if upload.size > self.MAX_UPLOAD:
                    self.fail("too_large", name=name, limit=self.MAX_UPLOAD)
                try:
                    files[name] = upload.read().decode("utf-8")
                except UnicodeDecodeError:
                    self.fail("not_text", name=name)
            data = files
        if not isinstance(data, dict) or not data:
            self.fail("invalid")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            self.fail("invalid")
        return data

    def to_representation(self, value):  # write-only
        return value


class EnabledField(serializers.BooleanField):
    """Enabled unless said otherwise, in a multipart form too (where DRF reads absent as false)."""

    default_empty_html = empty


class StoredSchemaSerializer(ServiceWritesMixin, StrictMixin, serializers.ModelSerializer):
    services = (stored_schema_save, stored_schema_save, "schema")

    enabled = EnabledField(required=False, default=True)
    proto_files = ProtoFilesField(
        write_only=True,
        required=False,
        help_text="Protobuf: .proto source, a JSON object of file name -> text (the main file and "
        "the files it imports, named as the imports spell them), or several files uploaded as "
        "multipart/form-data under this name. Compiled with protoc into the definition.",
    )

    sources = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=Source.objects.all(),
        required=False,
        help_text="Sources whose payloads it decodes.",
    )

    class Meta:
        model = StoredSchema
        fields = ["id", *STORED_SCHEMA_FIELDS, "proto_files", "sources", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {
            "definition": {
                "trim_whitespace": False,
                "required": False,
                "help_text": "The .avsc or JSON Schema text; for Protobuf a FileDescriptorSet "
                "(protoc --include_imports --descriptor_set_out=x.desc), base64-encoded, or "
                "give proto_files instead.",
            }
        }

    def validate(self, attrs):
        if self.instance is None and "definition" not in attrs and "proto_files" not in attrs:
            raise serializers.ValidationError({"definition": "give the definition (or proto_files)"})
        if "definition" in attrs and "proto_files" in attrs:
            raise serializers.ValidationError({"proto_files": "give the definition or proto_files, not both"})
        return attrs
