"""Redrive jobs and their per-message attempts."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .dead_letters import DeadLetter


class RedriveJobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    CANCELLING = "cancelling", "Cancelling"
    CANCELLED = "cancelled", "Cancelled"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


ACTIVE_JOB_STATUSES = (
    RedriveJobStatus.PENDING,
    RedriveJobStatus.RUNNING,
    RedriveJobStatus.PAUSED,
    RedriveJobStatus.CANCELLING,
)
#: a job in one of these may take its next chunk (not paused, not cancelling)
RUNNABLE_JOB_STATUSES = (RedriveJobStatus.PENDING, RedriveJobStatus.RUNNING)


class RedriveJob(models.Model):
    """A planned redrive of an exact set of dead letters (its RedriveAttempt rows)."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(
        max_length=16, choices=RedriveJobStatus.choices, default=RedriveJobStatus.PENDING
    )
    filter = models.JSONField(default=dict, blank=True, help_text="The filter the set was planned from.")
    destination = models.JSONField(default=dict, blank=True, help_text="Override; empty = original.")
    header_policy = models.JSONField(default=dict, blank=True)
    velocity = models.FloatField(null=True, blank=True, help_text="Messages per second; empty = unlimited.")
    batch_size = models.PositiveIntegerField(default=500)
    override_loop_guard = models.BooleanField(default=False)
    use_revisions = models.BooleanField(
        default=True, help_text="Send a message's latest edited revision instead of the original."
    )

    claim_cursor = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="While set, the worker still claims the filter's messages with a larger id.",
    )
    claim_actor_id = models.IntegerField(
        null=True, blank=True, help_text="Whose visibility the claim uses (the creator); empty = the system."
    )

    total = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "-created_at"], name="redrivejob_status")]

    def __str__(self) -> str:
        return f"Redrive #{self.pk} ({self.status})"

    @property
    def claiming(self) -> bool:
        """Whether the worker is still gathering the job's messages (``total`` is an estimate)."""
        return self.claim_cursor is not None

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.skipped

    @property
    def rate(self) -> float | None:
        """Messages per second since the job started (None before it starts)."""
        if not self.started_at:
            return None
        end = self.finished_at or timezone.now()
        elapsed = (end - self.started_at).total_seconds()
        return round((self.succeeded + self.failed) / elapsed, 1) if elapsed > 0 else None

    @property
    def eta_seconds(self) -> float | None:
        """Estimated seconds to completion at the current rate (None when unknown or finished)."""
        if self.finished_at or not self.rate:
            return None
        return round(max(0, self.total - self.done) / self.rate, 1)


class RedriveAttemptStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    CLAIMED = "claimed", "In flight"
    SUCCEEDED = "succeeded", "Redriven"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class RedriveAttempt(models.Model):
    """One message in one redrive job: planned, then attempted, with its outcome."""

    job = models.ForeignKey(RedriveJob, on_delete=models.CASCADE, related_name="attempts")
    dead_letter = models.ForeignKey(DeadLetter, on_delete=models.CASCADE, related_name="redrive_attempts")
    status = models.CharField(
        max_length=16, choices=RedriveAttemptStatus.choices, default=RedriveAttemptStatus.PENDING
    )
    redrive_id = models.UUIDField(default=uuid.uuid4, unique=True)
    previous_status = models.CharField(max_length=16, blank=True, help_text="Message status before the job.")
    revision = models.ForeignKey(
        "DeadLetterRevision",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The edited revision that was sent, when not the original.",
    )
    tries = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    destination = models.CharField(max_length=600, blank=True)
    broker_position = models.CharField(max_length=200, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    holds = models.BooleanField(
        default=False,
        help_text="The job holds the message: no other job may take it until this one ends "
        "(at most one holding attempt per message, enforced by a unique index).",
    )
    lease_token = models.UUIDField(
        null=True,
        blank=True,
        help_text="Fencing token of the chunk claim that owns the attempt while claimed.",
    )
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Until when the owner holds the claim unless it renews it."
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "dead_letter"], name="attempt_unique_per_job"),
            # one job at a time per message: claims INSERT ... ON CONFLICT against this index
            models.UniqueConstraint(
                fields=["dead_letter"], condition=Q(holds=True), name="attempt_one_holder_per_message"
            ),
        ]
        indexes = [
            models.Index(fields=["job", "status", "id"], name="attempt_job_status"),
            # the few attempts in flight: orphan checks (redrive.lease.release_orphans)
            models.Index(
                fields=["dead_letter"],
                name="attempt_active_message",
                condition=Q(status__in=["pending", "claimed"]),
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} message {self.dead_letter_id}: {self.status}"
