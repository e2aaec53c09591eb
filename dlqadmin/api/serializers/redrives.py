"""Redrive jobs: the create body (selection + options + dry_run), the plan, progress."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from dlqadmin.models import RedriveAttemptStatus, RedriveJob
from dlqadmin.selectors_dashboard import job_skipped_reasons
from dlqadmin.services.redrive import destination as routes
from dlqadmin.services.redrive import options as bounds

from .base import StrictSerializer
from .messages import SelectionSerializer

FAILURES_SHOWN = 100


class DestinationSerializer(StrictSerializer):
    """Where to redrive to; omitted = each message's original destination."""

    exchange = serializers.CharField(required=False, allow_blank=True, max_length=255, help_text="RabbitMQ.")
    routing_key = serializers.CharField(
        required=False, allow_blank=True, max_length=255, help_text="RabbitMQ."
    )
    use_original_route = serializers.BooleanField(
        required=False,
        help_text="RabbitMQ: publish to the original exchange + routing key, not the queue (the default "
        "anyway for a message with no recorded queue but a recorded exchange + routing key).",
    )
    topic = serializers.CharField(required=False, max_length=249, help_text="Kafka.")
    partition = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1, help_text="Kafka.")
    subject = serializers.CharField(required=False, max_length=500, help_text="NATS.")


class HeaderPolicySerializer(StrictSerializer):
    """Which headers a redrive copies, strips and adds (broker-owned headers are always dropped)."""

    copy_original = serializers.BooleanField(required=False, help_text="Copy the original headers (default).")
    strip = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        max_length=100,
        help_text="More header name prefixes to drop (case-insensitive).",
    )
    keep_diagnostics = serializers.BooleanField(
        required=False, help_text="Keep framework diagnostics (kafka_dlt-*, x-exception-*, ...)."
    )
    extra = serializers.DictField(
        child=serializers.CharField(max_length=1000, allow_blank=True),
        required=False,
        help_text="Headers to add.",
    )
    spring_retry_count = serializers.BooleanField(
        required=False, help_text="Also set Spring AMQP retry-count."
    )

    def validate_extra(self, value):
        if len(value) > 100:
            raise serializers.ValidationError("at most 100 extra headers")
        if any("\x00" in k for k in value):
            raise serializers.ValidationError("header names may not contain NUL")
        return value


class RedriveCreateSerializer(SelectionSerializer):
    destination = DestinationSerializer(required=False)
    velocity = serializers.FloatField(
        required=False,
        allow_null=True,
        min_value=bounds.MIN_VELOCITY,
        max_value=bounds.MAX_VELOCITY,
        error_messages={"min_value": bounds.VELOCITY_MESSAGE, "max_value": bounds.VELOCITY_MESSAGE},
        help_text="Messages per second; omitted or null = as fast as the broker confirms.",
    )
    batch_size = serializers.IntegerField(
        required=False,
        default=bounds.DEFAULT_BATCH,
        min_value=1,
        max_value=bounds.MAX_BATCH,
        error_messages={"min_value": bounds.BATCH_MESSAGE, "max_value": bounds.BATCH_MESSAGE},
    )
    header_policy = HeaderPolicySerializer(required=False)
    override_loop_guard = serializers.BooleanField(
        required=False, default=False, help_text="Redrive messages the loop guard parked."
    )
    dry_run = serializers.BooleanField(
        required=False, default=False, help_text="Return the plan (counts, destinations) and create nothing."
    )


ROUTE_HELP = (
    "origin: back where it failed (RabbitMQ queue, Kafka topic, NATS subject); original_route: "
    "RabbitMQ original exchange + routing key (use_original_route, or the default when no queue is "
    "recorded); override: the destination given; needs_destination: no origin recorded and no "
    "override, so it is not sent"
)


class PlanDestinationSerializer(serializers.Serializer):
    kind = serializers.CharField()
    source = serializers.CharField()
    route = serializers.ChoiceField(choices=routes.ROUTES, help_text=ROUTE_HELP)
    destination = serializers.CharField(help_text="Where they go: a queue, exchange + routing key, topic...")
    reason = serializers.CharField(help_text="needs_destination: why; otherwise empty.")
    count = serializers.IntegerField()


class PlanRoutesSerializer(serializers.Serializer):
    origin = serializers.IntegerField()
    original_route = serializers.IntegerField()
    override = serializers.IntegerField()
    needs_destination = serializers.IntegerField()


class RedrivePlanSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(default=True)
    total = serializers.IntegerField(help_text="Messages selected.")
    redrivable = serializers.IntegerField(
        help_text="Messages a job would send (not busy, not parked, with a destination)."
    )
    parked = serializers.IntegerField(help_text="Held back by the loop guard (see override_loop_guard).")
    busy = serializers.IntegerField(help_text="Already in an active job.")
    needs_destination = serializers.IntegerField(
        help_text="No origin recorded and no destination override: a job skips them; give a destination."
    )
    routes = PlanRoutesSerializer(help_text="Messages a job would consider (not busy or parked), by route.")
    destinations = PlanDestinationSerializer(
        many=True, help_text="Top 10 (source, route, destination) groups of those, with counts."
    )
    filter = serializers.DictField(help_text="The filter pinned with max_id: later arrivals are excluded.")
    ids_count = serializers.IntegerField(allow_null=True)

    def to_representation(self, plan):
        return {
            "dry_run": True,
            "total": plan.total,
            "redrivable": plan.redrivable,
            "parked": plan.parked,
            "busy": plan.busy,
            "needs_destination": plan.needs_destination,
            "routes": plan.routes,
            "destinations": plan.destinations,
            "filter": plan.filter,
            "ids_count": len(plan.ids) if plan.ids is not None else None,
        }


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField(help_text="succeeded + failed + skipped")
    remaining = serializers.IntegerField()
    percent = serializers.FloatField()
    rate_per_second = serializers.FloatField(
        allow_null=True, help_text="Messages sent (succeeded + failed) per second since the job started."
    )
    eta_seconds = serializers.FloatField(allow_null=True, help_text="remaining / rate; null when unknown.")


def progress(job: RedriveJob) -> dict:
    """Counters plus the rate and ETA the model computes (one definition for UI and API)."""
    done = job.done
    remaining = max(0, job.total - done)
    return {
        "done": done,
        "remaining": remaining,
        "percent": round(100.0 * done / job.total, 1) if job.total else 100.0,
        "rate_per_second": job.rate,
        "eta_seconds": 0.0 if job.finished_at or remaining == 0 else job.eta_seconds,
    }


class RedriveJobSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    progress = serializers.SerializerMethodField()
    claiming = serializers.BooleanField(
        read_only=True,
        help_text="True while the worker still gathers the messages of a large filter; total is the "
        "plan's estimate until then.",
    )

    class Meta:
        model = RedriveJob
        fields = [
            "id",
            "status",
            "created_by",
            "filter",
            "destination",
            "header_policy",
            "velocity",
            "batch_size",
            "override_loop_guard",
            "use_revisions",
            "claiming",
            "total",
            "succeeded",
            "failed",
            "skipped",
            "progress",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, obj):
        return progress(obj)


class FailureSerializer(serializers.Serializer):
    attempt = serializers.IntegerField(source="pk")
    message = serializers.IntegerField(source="dead_letter_id")
    reason = serializers.CharField(source="error")
    destination = serializers.CharField()
    tries = serializers.IntegerField()
    finished_at = serializers.DateTimeField(allow_null=True)


class SkippedReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(help_text="e.g. loop guard, needs a destination, cancelled")
    count = serializers.IntegerField()


class RedriveJobDetailSerializer(RedriveJobSerializer):
    failures = serializers.SerializerMethodField()
    skipped_reasons = serializers.SerializerMethodField()
    skips = serializers.SerializerMethodField()

    class Meta(RedriveJobSerializer.Meta):
        fields = [*RedriveJobSerializer.Meta.fields, "failures", "skipped_reasons", "skips"]
        read_only_fields = fields

    @extend_schema_field(SkippedReasonSerializer(many=True))
    def get_skipped_reasons(self, obj):
        """Why messages were skipped, most frequent first (at most 10 distinct reasons)."""
        return [{"reason": reason, "count": n} for reason, n in job_skipped_reasons(obj)]

    @extend_schema_field(FailureSerializer(many=True))
    def get_skips(self, obj):
        """The first skipped attempts (at most 100) with why: "busy in job #N" (another active
        job holds the message), the loop guard, or "cancelled"."""
        skipped = obj.attempts.filter(status=RedriveAttemptStatus.SKIPPED).order_by("id")[:FAILURES_SHOWN]
        return FailureSerializer(skipped, many=True).data

    @extend_schema_field(FailureSerializer(many=True))
    def get_failures(self, obj):
        """The first failed attempts (at most 100), with the broker's reason."""
        failed = obj.attempts.filter(status=RedriveAttemptStatus.FAILED).order_by("id")[:FAILURES_SHOWN]
        return FailureSerializer(failed, many=True).data
