"""OpenAPI generation: every operation documents the error answers it can give, in the one
error shape (see dlqadmin/api/exceptions.py), so generated clients and schemathesis know them."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from dlqadmin.api.serializers.base import StrictMixin


class ApiErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="A clear message for a person.")
    fields = serializers.DictField(
        child=serializers.CharField(), help_text="Per-field messages, keyed by dotted path (a.b.0)."
    )
    permanent = serializers.BooleanField(
        required=False, help_text="Broker errors only: true when retrying cannot help."
    )


class ApiAutoSchema(AutoSchema):
    def _map_serializer(self, serializer, direction, bypass_extensions=False):
        schema = super()._map_serializer(serializer, direction, bypass_extensions)
        if isinstance(serializer, StrictMixin):
            schema["additionalProperties"] = False  # an unknown key is a 400
        # combinations a field-by-field schema cannot say ("exactly one of ids / filter")
        schema.update(getattr(serializer, "schema_rules", {}))
        return schema

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


def _link(operation_id: str, description: str, *, parameters=None, body=None) -> dict:
    link = {"operationId": operation_id, "description": description}
    if parameters:
        link["parameters"] = parameters
    if body:
        link["requestBody"] = body
    return link


_ID = "$response.body#/id"
_FIRST = "$response.body#/results/0/id"
#: (path, method, status) -> links: how the id one answer returns is used by the next request
#: (OpenAPI links, for clients and for schemathesis' stateful run in tests/api/test_schema.py)
LINKS = {
    ("/api/v1/connections/", "post", "201"): {
        "CreateSource": _link(
            "sources_create", "Add a source reading from this connection.", body={"connection": _ID}
        ),
        "CheckHealth": _link("connections_health_retrieve", "Check it.", parameters={"id": _ID}),
    },
    ("/api/v1/sources/", "post", "201"): {
        "Harvest": _link("sources_harvest_create", "Harvest it now.", parameters={"id": _ID}),
        "AlertOnIt": _link("alert_rules_create", "An alert rule for it.", body={"source": _ID}),
        "MaskIt": _link("masking_rules_create", "A masking rule for it.", body={"sources": [_ID]}),
    },
    ("/api/v1/messages/", "get", "200"): {
        "RedriveThem": _link("redrives_create", "Redrive the first listed message.", body={"ids": [_FIRST]}),
        "DiscardThem": _link("messages_discard_create", "Discard it.", body={"ids": [_FIRST]}),
        "ResolveThem": _link("messages_resolve_create", "Resolve it.", body={"ids": [_FIRST]}),
        "ArchiveThem": _link("messages_archive_create", "Archive it.", body={"ids": [_FIRST]}),
    },
    ("/api/v1/redrives/", "post", "201"): {
        "Pause": _link("redrives_pause_create", "Pause the job.", parameters={"id": _ID}),
        "Cancel": _link("redrives_cancel_create", "Cancel the job.", parameters={"id": _ID}),
    },
    ("/api/v1/redrives/{id}/pause/", "post", "200"): {
        "Resume": _link("redrives_resume_create", "Resume the job.", parameters={"id": _ID}),
    },
    ("/api/v1/tokens/", "post", "201"): {
        "RevokeIt": _link("tokens_revoke_create", "Revoke the new token.", parameters={"id": _ID}),
        "GetIt": _link("tokens_retrieve", "The new token (never its key).", parameters={"id": _ID}),
    },
}


def add_links(result, generator, request, public):
    """drf-spectacular postprocessing hook: declare ``LINKS`` on the responses they start from."""
    for (path, method, status), links in LINKS.items():
        response = result["paths"][path][method]["responses"][status]
        response.setdefault("links", {}).update(links)
    return result
