"""The schema store: Avro, Protobuf and JSON Schema definitions uploaded into dlqadmin, bound to
sources (optionally only for messages whose header has a given value), for payloads that carry
no Schema Registry framing (RabbitMQ, NATS, or Kafka without a registry)."""

from django.core.exceptions import ValidationError
from django.db import models

from dlqadmin.decoding import confluent

from .brokers import Source

__all__ = ["SchemaKind", "StoredSchema"]


class SchemaKind(models.TextChoices):
    AVRO = "avro", "Avro (.avsc)"
    PROTOBUF = "protobuf", "Protobuf (descriptor set: protoc --include_imports --descriptor_set_out)"
    JSON_SCHEMA = "json_schema", "JSON Schema"


class StoredSchema(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=SchemaKind.choices)
    definition = models.TextField(
        help_text="The .avsc or JSON Schema text; for Protobuf the descriptor set, base64-encoded."
    )
    message_type = models.CharField(
        max_length=300, blank=True, help_text="Protobuf: the full name of the message, e.g. acme.Order."
    )
    sources = models.ManyToManyField(Source, blank=True, related_name="schemas", help_text="Decode these.")
    header = models.CharField(
        max_length=200,
        blank=True,
        help_text="Only messages whose header (or content type: content-type) has the value below. "
        "Empty: every message of the sources.",
    )
    header_value = models.CharField(max_length=500, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def as_schema(self) -> confluent.Schema:
        """The schema ``dlqadmin.decoding`` reads with (raises confluent.RecordError)."""
        return confluent.stored_schema(
            self.kind, self.definition, message_type=self.message_type, label=self.name
        )

    def clean(self):
        if self.kind == SchemaKind.PROTOBUF and not self.message_type:
            raise ValidationError({"message_type": "name the message the payloads hold, e.g. acme.Order"})
        if self.header_value and not self.header:
            raise ValidationError({"header": "name the header whose value selects this schema"})
        try:
            self.as_schema()
        except confluent.RecordError as exc:
            raise ValidationError({"definition": str(exc)}) from None
