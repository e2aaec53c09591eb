"""Harvested dead letters, their edited revisions and the error groups they fall into."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from .brokers import Source


class ErrorGroupStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"
    IGNORED = "ignored", "Ignored"


class ErrorGroup(models.Model):
    """Failures that share a fingerprint (exception class + normalised message + source)."""

    fingerprint = models.CharField(max_length=64, unique=True)
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="error_groups", null=True)
    error_class = models.CharField(max_length=500, blank=True)
    reason = models.CharField(max_length=100, blank=True)
    message_pattern = models.TextField(blank=True)
    sample_message = models.TextField(blank=True)
    count = models.BigIntegerField(default=0)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=ErrorGroupStatus.choices, default=ErrorGroupStatus.OPEN)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    auto_retry = models.BooleanField(
        null=True,
        blank=True,
        help_text="Override the source's automatic retry for this group (empty = inherit).",
    )

    class Meta:
        ordering = ["-last_seen"]
        indexes = [models.Index(fields=["status", "-last_seen"], name="errorgroup_status_seen")]

    def __str__(self) -> str:
        return f"{self.error_class or self.reason}: {self.message_pattern[:80]}"


class DeadLetterStatus(models.TextChoices):
    NEW = "new", "New"
    QUEUED = "queued", "Queued for redrive"
    REDRIVEN = "redriven", "Redriven"
    FAILED = "failed", "Redrive failed"
    PARKED = "parked", "Parked (loop guard)"
    DISCARDED = "discarded", "Discarded"
    RESOLVED = "resolved", "Resolved"
    ARCHIVED = "archived", "Archived"


class DeadLetter(models.Model):
    """A harvested dead letter, stored losslessly.

    ``position`` identifies the message on the broker (RabbitMQ: queue + fingerprint; Kafka:
    cluster + topic + partition + offset; NATS: stream + seq or advisory id). It is UNIQUE per
    source, so harvesting the same message twice inserts nothing.
    """

    # no single-column index on the foreign keys: the unique (source, position) and the
    # deadletter_source / deadletter_group indexes start with them (each index costs every write)
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="dead_letters", db_index=False)
    position = models.CharField(max_length=600)

    payload = models.BinaryField(default=b"")
    payload_available = models.BooleanField(default=True)
    read_notes = models.JSONField(
        default=list,
        blank=True,
        help_text='What the harvester could not read of this message ("could not read <field>: <why>").',
    )
    payload_size = models.PositiveBigIntegerField(default=0)
    key = models.BinaryField(null=True, blank=True)
    headers = models.JSONField(default=list, blank=True, help_text="Ordered [name, typed value] pairs.")
    properties = models.JSONField(default=dict, blank=True)

    origin_exchange = models.CharField(max_length=255, blank=True)
    origin_routing_key = models.CharField(max_length=255, blank=True)
    origin_queue = models.CharField(max_length=255, blank=True)
    origin_topic = models.CharField(max_length=255, blank=True)
    origin_partition = models.IntegerField(null=True, blank=True)
    origin_offset = models.BigIntegerField(null=True, blank=True)
    origin_stream = models.CharField(max_length=255, blank=True)
    origin_subject = models.CharField(max_length=500, blank=True)
    origin_seq = models.BigIntegerField(null=True, blank=True)
    origin_extra = models.JSONField(default=dict, blank=True)

    reason = models.CharField(max_length=100, blank=True)  # indexed by deadletter_reason (exact match only)
    error_class = models.CharField(max_length=500, blank=True)
    error_message = models.TextField(blank=True)
    stacktrace = models.TextField(blank=True)

    failed_at = models.DateTimeField(default=timezone.now)
    harvested_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=DeadLetterStatus.choices, default=DeadLetterStatus.NEW)
    retry_count = models.PositiveIntegerField(default=0, help_text="x-retry-count seen on the message.")
    redrive_count = models.PositiveIntegerField(default=0)
    last_redriven_at = models.DateTimeField(null=True, blank=True)
    error_group = models.ForeignKey(
        ErrorGroup,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="dead_letters",
        db_index=False,
    )

    class Meta:
        ordering = ["-failed_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "position"], name="deadletter_unique_position"),
        ]
        indexes = [
            models.Index(fields=["-failed_at", "-id"], name="deadletter_failed_at"),
            models.Index(fields=["status", "-failed_at", "-id"], name="deadletter_status"),
            models.Index(fields=["source", "-failed_at", "-id"], name="deadletter_source"),
            models.Index(fields=["error_group", "-failed_at", "-id"], name="deadletter_group"),
            models.Index(fields=["reason"], name="deadletter_reason"),
        ]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.position}"

    @property
    def original_destination(self) -> str:
        return self.origin_queue or self.origin_topic or self.origin_subject or ""


class DeadLetterRevision(models.Model):
    """An operator's edit of a dead letter's payload/headers. The original row never changes."""

    dead_letter = models.ForeignKey(DeadLetter, on_delete=models.CASCADE, related_name="revisions")
    payload = models.BinaryField()
    key = models.BinaryField(null=True, blank=True)
    headers = models.JSONField(default=list, blank=True)
    note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = ["created_at", "id"]

    def __str__(self) -> str:
        return f"revision {self.pk} of dead letter {self.dead_letter_id}"
