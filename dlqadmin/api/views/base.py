"""What every API view shares: authentication, role permission, throttling, JSON only, the
error format, cursor pagination."""

from __future__ import annotations

from django.http import JsonResponse
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, viewsets
from rest_framework.renderers import JSONRenderer

from dlqadmin.api.authentication import AUTHENTICATION_CLASSES
from dlqadmin.api.exceptions import api_exception_handler
from dlqadmin.api.pagination import IdCursorPagination
from dlqadmin.api.parsers import PARSER_CLASSES
from dlqadmin.api.permissions import THROTTLE_CLASSES, AnonThrottle, RolePermission
from dlqadmin.api.schema import ApiAutoSchema
from dlqadmin.proxies import client_ip


class ApiViewMixin:
    authentication_classes = AUTHENTICATION_CLASSES
    permission_classes = [RolePermission]
    throttle_classes = THROTTLE_CLASSES
    parser_classes = PARSER_CLASSES
    renderer_classes = [JSONRenderer]
    pagination_class = IdCursorPagination
    filter_backends = [DjangoFilterBackend]
    schema = ApiAutoSchema()
    # any segment reaches the view, so a malformed id is a JSON 404 (never Django's HTML page)
    lookup_value_regex = "[^/]+"
    #: viewset action -> dlqadmin.permissions action (reads default to "view")
    role_actions: dict[str, str] = {}

    def get_exception_handler(self):
        return api_exception_handler

    def initial(self, request, *args, **kwargs):
        try:
            super().initial(request, *args, **kwargs)
        except (exceptions.NotAuthenticated, exceptions.AuthenticationFailed):
            # Failed logins count against the anonymous rate too, so keys cannot be guessed
            # at full speed (DRF checks throttles only after authentication succeeded).
            throttle = AnonThrottle()
            if not throttle.allow_request(request, self):
                self.throttled(request, throttle.wait())
            raise

    def remote_addr(self) -> str | None:
        return client_ip(self.request)


class ApiViewSet(ApiViewMixin, viewsets.GenericViewSet):
    pass


def api_not_found(request, *args, **kwargs):
    """Unknown paths under /api/v1/ answer JSON, like every other API error."""
    return JsonResponse({"error": f"no API endpoint at {request.path}", "fields": {}}, status=404)
