"""redrives/: plan (dry_run) or create a job, list, progress, cancel / pause / resume."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from dlqadmin import permissions as roles
from dlqadmin.api.filters import RedriveJobFilter
from dlqadmin.api.serializers.redrives import (
    RedriveCreateSerializer,
    RedriveJobDetailSerializer,
    RedriveJobSerializer,
    RedrivePlanSerializer,
)
from dlqadmin.models import RedriveJob
from dlqadmin.selectors import redrive_jobs_for
from dlqadmin.services.redrive.jobs import (
    redrive_job_cancel,
    redrive_job_create,
    redrive_job_pause,
    redrive_job_resume,
    redrive_plan,
)

from .base import ApiViewSet
from .connections import ERRORS

CONFLICT = {409: OpenApiResponse(description="The job's state does not allow it: {error, fields}")}


def _control(summary: str):
    return extend_schema(
        summary=summary, request=None, responses={200: RedriveJobDetailSerializer, **CONFLICT}
    )


@extend_schema_view(
    list=extend_schema(summary="List redrive jobs, newest first"),
    retrieve=extend_schema(summary="A job's progress: counters, rate, ETA and the first 100 failures"),
)
class RedriveViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = RedriveJob.objects.select_related("created_by")
    filterset_class = RedriveJobFilter
    role_actions = {
        "create": roles.REDRIVE,
        "cancel": roles.REDRIVE,
        "pause": roles.REDRIVE,
        "resume": roles.REDRIVE,
    }

    def get_queryset(self):
        return redrive_jobs_for(self.request.user).select_related("created_by")

    def get_serializer_class(self):
        return RedriveJobSerializer if self.action == "list" else RedriveJobDetailSerializer

    @extend_schema(
        summary="Redrive messages by ids or filter (operator)",
        description='Body: {"ids": [...]} or {"filter": {...}} plus options. With dry_run=true the '
        "answer is the plan (200) and nothing is created; otherwise the job (201), processed "
        "in the background. Messages with no recorded origin need a destination override: the plan "
        "counts them (needs_destination), a job skips them with that reason, and 400 when nothing "
        "else is left. 409 when every selected message is already in an active job.",
        request=RedriveCreateSerializer,
        responses={
            200: OpenApiResponse(RedrivePlanSerializer, description="dry_run: the plan"),
            201: OpenApiResponse(RedriveJobDetailSerializer, description="The job"),
            **ERRORS,
            409: OpenApiResponse(description="Every selected message is already in an active job"),
        },
    )
    def create(self, request):
        body = RedriveCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if data["dry_run"]:
            plan = redrive_plan(
                actor=request.user,
                override_loop_guard=data["override_loop_guard"],
                destination=dict(data.get("destination") or {}) or None,
                **body.selection,
            )
            return Response(RedrivePlanSerializer(plan).data)
        job = redrive_job_create(
            actor=request.user,
            destination=dict(data.get("destination") or {}) or None,
            velocity=data.get("velocity"),
            batch_size=data["batch_size"],
            header_policy=dict(data.get("header_policy") or {}) or None,
            override_loop_guard=data["override_loop_guard"],
            remote_addr=self.remote_addr(),
            **body.selection,
        )
        return Response(RedriveJobDetailSerializer(job).data, status=status.HTTP_201_CREATED)

    @_control("Cancel: no new chunk starts; pending messages go back to their previous status")
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = redrive_job_cancel(job=self.get_object(), actor=request.user, remote_addr=self.remote_addr())
        return Response(RedriveJobDetailSerializer(job).data)

    @_control("Pause a pending or running job")
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        job = redrive_job_pause(job=self.get_object(), actor=request.user, remote_addr=self.remote_addr())
        return Response(RedriveJobDetailSerializer(job).data)

    @_control("Resume a paused job")
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        job = redrive_job_resume(job=self.get_object(), actor=request.user, remote_addr=self.remote_addr())
        return Response(RedriveJobDetailSerializer(job).data)
