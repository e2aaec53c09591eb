"""connections/ (+ health/, discover/) and sources/ (+ harvest/)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from dlqadmin import permissions as roles
from dlqadmin.api.exceptions import broker_call
from dlqadmin.api.filters import ConnectionFilter, SourceFilter
from dlqadmin.api.serializers.connections import (
    ConnectionSerializer,
    DiscoveredSourceSerializer,
    HarvestReportSerializer,
    HarvestRequestSerializer,
    HealthSerializer,
    SourceSerializer,
)
from dlqadmin.models import Connection, Source
from dlqadmin.selectors import visible_sources
from dlqadmin.services.connections import connection_check_health, connection_delete, connection_discover
from dlqadmin.services.sources import source_delete, source_harvest_now

from .base import ApiViewSet

ERRORS = {
    400: OpenApiResponse(description="Invalid input: {error, fields}"),
    401: OpenApiResponse(description="Not authenticated"),
    403: OpenApiResponse(description="Role does not allow it"),
}
BROKER_ERRORS = {
    502: OpenApiResponse(description="The broker refused (permanent): {error, permanent}"),
    503: OpenApiResponse(
        description="The broker is unreachable or timed out (transient): {error, permanent}"
    ),
}

_CRUD = {
    "create": roles.MANAGE_CONNECTIONS,
    "update": roles.MANAGE_CONNECTIONS,
    "partial_update": roles.MANAGE_CONNECTIONS,
    "destroy": roles.MANAGE_CONNECTIONS,
}


class ServiceCrudMixin(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
):
    """CRUD whose writes are the services' (they validate and audit): the serializers' create /
    update call them with the actor; ``perform_destroy`` is each viewset's delete service."""

    def perform_create(self, serializer):
        serializer.save(actor=self.request.user, remote_addr=self.remote_addr())

    def perform_update(self, serializer):
        serializer.save(actor=self.request.user, remote_addr=self.remote_addr())

    def get_success_headers(self, data):
        """Location: the new resource (DRF would send a "url" field there: a connection's broker
        URL, which is no link and may not even fit in a header)."""
        return {"Location": self.request.build_absolute_uri(f"{self.request.path}{data['id']}/")}


@extend_schema_view(
    list=extend_schema(
        summary="List broker connections", responses={200: ConnectionSerializer(many=True), **ERRORS}
    ),
    retrieve=extend_schema(summary="A connection (credentials are never returned)"),
    create=extend_schema(summary="Add a connection (admin)", responses={201: ConnectionSerializer, **ERRORS}),
    update=extend_schema(
        summary="Replace a connection (admin)", responses={200: ConnectionSerializer, **ERRORS}
    ),
    partial_update=extend_schema(summary="Change a connection (admin)"),
    destroy=extend_schema(
        summary="Delete a connection without sources (admin)",
        responses={204: None, 409: OpenApiResponse(description="It still has sources")},
    ),
)
class ConnectionViewSet(ServiceCrudMixin, ApiViewSet):
    queryset = Connection.objects.all()
    serializer_class = ConnectionSerializer
    filterset_class = ConnectionFilter
    role_actions = {**_CRUD, "health": roles.VIEW, "discover": roles.MANAGE_CONNECTIONS}

    def perform_destroy(self, instance):
        connection_delete(actor=self.request.user, connection=instance, remote_addr=self.remote_addr())

    @extend_schema(
        summary="Check the connection now and record the result",
        description="Connects to the broker (5 s timeout). Broker trouble is a result (ok=false), "
        "not an error; 502 only when the broker layer rejects the connection settings.",
        responses={200: HealthSerializer, **BROKER_ERRORS},
    )
    @action(detail=True, methods=["get"])
    def health(self, request, pk=None):
        connection = self.get_object()
        with broker_call("the health check"):
            health = connection_check_health(connection=connection)
        connection.refresh_from_db(fields=["last_checked_at"])
        return Response(
            {
                "ok": health.ok,
                "server_version": health.server_version,
                "latency_ms": health.latency_ms,
                "error": health.error,
                "checked_at": connection.last_checked_at,
            }
        )

    @extend_schema(
        summary="Candidate dead-letter locations on this broker (admin)",
        responses={200: DiscoveredSourceSerializer(many=True), **BROKER_ERRORS},
    )
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def discover(self, request, pk=None):
        connection = self.get_object()
        with broker_call("discovery"):
            found = connection_discover(connection=connection)
        return Response(DiscoveredSourceSerializer(found, many=True).data)


@extend_schema_view(
    list=extend_schema(summary="List dead-letter sources"),
    retrieve=extend_schema(summary="A source"),
    create=extend_schema(summary="Add a source (admin)", responses={201: SourceSerializer, **ERRORS}),
    update=extend_schema(summary="Replace a source (admin)"),
    partial_update=extend_schema(summary="Change a source (admin)"),
    destroy=extend_schema(
        summary="Delete a source without stored messages (admin)",
        responses={204: None, 409: OpenApiResponse(description="It still has stored messages")},
    ),
)
class SourceViewSet(ServiceCrudMixin, ApiViewSet):
    queryset = Source.objects.none()  # for the schema; get_queryset is per user
    serializer_class = SourceSerializer
    filterset_class = SourceFilter
    role_actions = {**_CRUD, "harvest": roles.HARVEST}

    def perform_destroy(self, instance):
        source_delete(actor=self.request.user, source=instance, remote_addr=self.remote_addr())

    def get_queryset(self):
        """The sources the user may see (per-source restrictions: dlqadmin.selectors)."""
        if getattr(self, "swagger_fake_view", False):
            return Source.objects.none()
        return visible_sources(self.request.user).select_related("connection").order_by("-id")

    @extend_schema(
        summary="Harvest now (operator)",
        description="Reads up to `limit` dead letters from the broker into the store and returns the "
        "counts. Every batch is committed before the broker copy is acknowledged.",
        request=HarvestRequestSerializer,
        responses={200: HarvestReportSerializer, **ERRORS, **BROKER_ERRORS},
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def harvest(self, request, pk=None):
        source = self.get_object()
        body = HarvestRequestSerializer(data=request.data if request.data else {})
        body.is_valid(raise_exception=True)
        with broker_call(f"harvest of {source.name}"):
            report = source_harvest_now(
                actor=request.user,
                source=source,
                limit=body.validated_data["limit"],
                remote_addr=self.remote_addr(),
            )
        return Response(HarvestReportSerializer(report).data, status=status.HTTP_200_OK)
