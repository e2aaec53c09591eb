"""Pagination: keyset cursors everywhere (constant cost at any depth, stable under inserts).

Messages page through :func:`dlqadmin.selectors.dead_letter_page` (ordered by failure time);
every other list uses DRF's cursor pagination on ``-id``. Both answer ``{"next": url|null,
"results": [...]}``; a malformed cursor or page size is a 400, never a 404 or 500.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.utils.urls import replace_query_param

from dlqadmin.api.exceptions import ApiError

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size_from(request, default: int = DEFAULT_PAGE_SIZE) -> int:
    raw = request.query_params.get("page_size")
    if raw in (None, ""):
        return default
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ApiError(
            f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}",
            fields={"page_size": f"must be an integer from 1 to {MAX_PAGE_SIZE}"},
        )
    return size


def next_link(request, cursor: str | None) -> str | None:
    if not cursor:
        return None
    return replace_query_param(request.build_absolute_uri(), "cursor", cursor)


class IdCursorPagination(CursorPagination):
    ordering = "-id"
    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request):
        return page_size_from(request, self.page_size)

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except Exception:  # noqa: BLE001 - DRF raises NotFound; a bad cursor is bad input
            raise ApiError("invalid cursor", fields={"cursor": "invalid cursor"}) from None

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except (ValueError, TypeError, OverflowError, DjangoValidationError):
            # a crafted cursor whose position is not an id
            raise ApiError("invalid cursor", fields={"cursor": "invalid cursor"}) from None

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}
        return parameters

    def get_paginated_response(self, data):
        from rest_framework.response import Response

        return Response({"next": self.get_next_link(), "results": data})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }
