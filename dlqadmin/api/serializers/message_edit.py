"""A message's decoded payload and its edit: the ``decoded`` block of GET ``?decode=true`` and
the PATCH body (payload_text / payload_base64, or ``payload_json`` re-encoded as the original,
optionally with another ``schema_version``; headers; note)."""

from __future__ import annotations

import base64
import binascii

from rest_framework import serializers

from dlqadmin.models import DeadLetter
from dlqadmin.services.decoding import payload_reencode

from .base import StrictCharField, StrictSerializer, reject_nul


# ---- decoded ---------------------------------------------------------------------------------
class DecodedSerializer(serializers.Serializer):
    value = serializers.JSONField(
        allow_null=True,
        help_text='The decoded value (masked for viewers); bytes are {"$bytes": "<base64>"}.',
    )
    has_value = serializers.BooleanField(help_text="False when decoding failed or found nothing to decode.")
    chain = serializers.CharField(help_text='What decoded it, e.g. "gzip → JSON".')
    steps = serializers.ListField(
        child=serializers.CharField(),
        help_text="Step kinds: gzip, zstd, snappy, lz4, json, msgpack, cbor, text.",
    )
    format = serializers.CharField(help_text="The body format reached, or empty.")
    error = serializers.CharField(help_text="Why decoding stopped (truncated, unknown schema ...), or empty.")
    masked = serializers.BooleanField()


def decoded_dict(found) -> dict:
    return {
        "value": found.value if found.has_value else None,
        "has_value": found.has_value,
        "chain": found.chain,
        "steps": [step.kind for step in found.steps],
        "format": found.format,
        "error": found.error,
        "masked": found.masked,
    }


# ---- edit ------------------------------------------------------------------------------------
class HeaderInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=1000, trim_whitespace=False)
    node = serializers.DictField(help_text='Typed value as in GET, e.g. {"t": "str", "v": "acme"}.')
    # accepted (and ignored) so the headers of a GET can be sent back unchanged
    type = serializers.CharField(required=False, write_only=True)
    value_text = serializers.CharField(required=False, allow_blank=True, write_only=True)

    def validate_node(self, value):
        return reject_nul(value)


class MessageEditSerializer(StrictSerializer):
    #: for the OpenAPI schema: what ``validate`` requires
    schema_rules = {
        "anyOf": [
            {"required": ["payload_text"]},
            {"required": ["payload_base64"]},
            {"required": ["payload_json"]},
            {"required": ["headers"]},
        ],
        "not": {"required": ["payload_text", "payload_base64"]},
    }

    payload_text = StrictCharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text="New payload as UTF-8 text."
    )
    payload_base64 = StrictCharField(
        required=False, allow_blank=True, help_text="New payload as base64 (binary payloads)."
    )
    payload_json = serializers.JSONField(
        required=False,
        help_text="The decoded payload, edited (GET ?decode=true gives it): validated against the "
        "message's schema and re-encoded as the original was (same schema id, same compression). "
        "Only for a message that decodes.",
    )
    schema_version = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**31 - 1,
        help_text="With payload_json for a Schema Registry record: re-encode with this version of "
        "its subject (e.g. a later one) instead of the schema it was written with.",
    )
    headers = HeaderInputSerializer(
        many=True, required=False, help_text="Replaces the headers; omit to keep the current ones."
    )
    note = StrictCharField(required=False, allow_blank=True, max_length=500, default="")

    def validate_payload_base64(self, value: str) -> bytes:
        try:
            return base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise serializers.ValidationError("not valid base64") from None

    def validate(self, attrs):
        given = [k for k in ("payload_text", "payload_base64", "payload_json") if k in attrs]
        if len(given) > 1:
            raise serializers.ValidationError(
                {given[0]: "give one of payload_text, payload_base64 or payload_json"}
            )
        if "schema_version" in attrs and "payload_json" not in attrs:
            raise serializers.ValidationError({"schema_version": "only with payload_json"})
        if not given and "headers" not in attrs:
            raise serializers.ValidationError(
                {"payload_text": "give payload_text, payload_base64 or payload_json (and/or headers)"}
            )
        return attrs

    def edit(self, letter: DeadLetter, *, actor=None) -> dict:
        """Keyword arguments for ``dead_letter_revise`` (unchanged parts from the latest revision)."""
        data = self.validated_data
        latest = letter.revisions.first()
        if "payload_text" in data:
            payload = data["payload_text"].encode("utf-8", "surrogatepass")
        elif "payload_base64" in data:
            payload = data["payload_base64"]
        elif "payload_json" in data:
            payload = payload_reencode(
                letter, data["payload_json"], actor=actor, schema_version=data.get("schema_version")
            )
        else:
            payload = bytes(latest.payload if latest else letter.payload)
        headers = None
        if "headers" in data:
            headers = [[h["name"], h["node"]] for h in data["headers"]]
        return {"payload": payload, "headers": headers, "note": data.get("note", "")}

    @property
    def payload_field(self) -> str:
        for name in ("payload_base64", "payload_json"):
            if name in self.validated_data:
                return name
        return "payload_text"
