"""OpenAPI generation: every operation documents the error answers it can give, in the one
error shape (see dlqadmin/api/exceptions.py), so generated clients and schemathesis know them."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers


class ApiErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="A clear message for a person.")
    fields = serializers.DictField(
        child=serializers.CharField(), help_text="Per-field messages, keyed by dotted path (a.b.0)."
    )
    permanent = serializers.BooleanField(
        required=False, help_text="Broker errors only: true when retrying cannot help."
    )


class ApiAutoSchema(AutoSchema):
    def _is_list_view(self, serializer=None):
        # a view that pages by hand answers one object {next, results} even for "list"
        if getattr(self.view, "action", None) == "list" and getattr(self.view, "pages_by_hand", False):
            return False
        return super()._is_list_view(serializer)

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        codes = ["400", "401", "403", "429"]
        if "{" in self.path:
            # 404 for an unknown id; 405 when the id spells an action route of another method
            # (GET messages/resolve/ reaches the POST-only resolve action)
            codes += ["404", "405"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes.append("415")
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(ApiErrorSerializer, code, direction=direction)
            elif not responses[code].get("content"):
                described = self._get_response_for_code(ApiErrorSerializer, code, direction=direction)
                described["description"] = responses[code].get("description") or described["description"]
                responses[code] = described
        for code, response in responses.items():  # 409 / 502 / 503 declared by description only
            if code[0] in "45" and not response.get("content"):
                described = self._get_response_for_code(ApiErrorSerializer, code, direction=direction)
                described["description"] = response.get("description") or described["description"]
                responses[code] = described
        return responses
