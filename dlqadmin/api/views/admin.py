"""error-groups/ (+ status), audit-events/ (read-only) and tokens/ (own; admins see all)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from dlqadmin import permissions as roles
from dlqadmin.api.filters import AuditEventFilter, ErrorGroupFilter, TokenFilter
from dlqadmin.api.serializers.admin import (
    AuditEventSerializer,
    ErrorGroupSerializer,
    ErrorGroupStatusSerializer,
    TokenCreatedSerializer,
    TokenCreateSerializer,
    TokenSerializer,
)
from dlqadmin.models import ApiToken, AuditEvent, ErrorGroup
from dlqadmin.selectors import error_groups_for
from dlqadmin.services.dead_letters import error_group_set_status
from dlqadmin.services.tokens import token_create, token_revoke

from .base import ApiViewSet
from .connections import ERRORS


@extend_schema_view(
    list=extend_schema(summary="List error groups"),
    retrieve=extend_schema(summary="An error group"),
)
class ErrorGroupViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = ErrorGroup.objects.none()  # for the schema; get_queryset is per user
    serializer_class = ErrorGroupSerializer
    filterset_class = ErrorGroupFilter
    http_method_names = ["get", "post", "patch", "head", "options"]
    role_actions = {"set_status": roles.MANAGE_GROUPS, "partial_update": roles.MANAGE_GROUPS}

    def get_queryset(self):
        """Groups of the sources the user may see."""
        if getattr(self, "swagger_fake_view", False):
            return ErrorGroup.objects.none()
        return error_groups_for(self.request.user).select_related("source")

    def _set_status(self, request):
        body = ErrorGroupStatusSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        group = error_group_set_status(
            actor=request.user,
            group=self.get_object(),
            status=body.validated_data["status"],
            remote_addr=self.remote_addr(),
        )
        return Response(ErrorGroupSerializer(group, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="Change the status: open, acknowledged, resolved, ignored (operator)",
        request=ErrorGroupStatusSerializer,
        responses={200: ErrorGroupSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="status")
    def set_status(self, request, pk=None):
        return self._set_status(request)

    @extend_schema(
        summary="Change the status (same as POST status/)",
        request=ErrorGroupStatusSerializer,
        responses={200: ErrorGroupSerializer, **ERRORS},
    )
    def partial_update(self, request, pk=None):
        return self._set_status(request)


@extend_schema_view(
    list=extend_schema(summary="The audit trail, newest first"),
    retrieve=extend_schema(summary="An audit event"),
)
class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    role_actions = {"list": roles.VIEW_AUDIT, "retrieve": roles.VIEW_AUDIT}


@extend_schema_view(
    list=extend_schema(summary="Your API tokens (admins: everyone's)"),
    retrieve=extend_schema(summary="An API token (never its key)"),
    destroy=extend_schema(summary="Revoke a token (same as POST revoke/)", responses={204: None}),
)
class TokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, ApiViewSet):
    serializer_class = TokenSerializer
    filterset_class = TokenFilter
    # any role may manage its own tokens; seeing others' needs manage_tokens (admin)
    role_actions = {"create": roles.VIEW, "revoke": roles.VIEW, "destroy": roles.VIEW}

    def get_queryset(self):
        qs = ApiToken.objects.select_related("user")
        if getattr(self, "swagger_fake_view", False):
            return qs.none()
        if roles.can(self.request.user, roles.MANAGE_TOKENS):
            return qs
        return qs.filter(user=self.request.user)

    @extend_schema(
        summary="Create a token for yourself; the key is in this answer only",
        request=TokenCreateSerializer,
        responses={201: TokenCreatedSerializer, **ERRORS},
    )
    def create(self, request):
        body = TokenCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token, raw_key = token_create(
            user=request.user,
            name=body.validated_data["name"],
            actor=request.user,
            remote_addr=self.remote_addr(),
        )
        data = TokenCreatedSerializer(token, context={"raw_key": raw_key}).data
        return Response(data, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    @extend_schema(summary="Revoke a token", request=None, responses={200: TokenSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        token = token_revoke(token=self.get_object(), actor=request.user, remote_addr=self.remote_addr())
        return Response(TokenSerializer(token).data)

    def perform_destroy(self, instance):
        token_revoke(token=instance, actor=self.request.user, remote_addr=self.remote_addr())
