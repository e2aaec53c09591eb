"""Domain models: connections, sources, dead letters, error groups, redrive jobs, audit."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from . import crypto


class BrokerKind(models.TextChoices):
    RABBITMQ = "rabbitmq", "RabbitMQ"
    KAFKA = "kafka", "Kafka"
    NATS = "nats", "NATS JetStream"


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    OK = "ok", "Healthy"
    ERROR = "error", "Unreachable"


class Connection(models.Model):
    """One broker endpoint. Credentials are stored encrypted and never rendered back."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=BrokerKind.choices)
    url = models.CharField(
        max_length=1000,
        help_text="amqp://host:5672/vhost, Kafka bootstrap servers host:9092[,host:9092], "
        "or nats://host:4222[,nats://...]. Put credentials in the fields below, not in the URL.",
    )
    username = models.CharField(max_length=200, blank=True)
    password_encrypted = models.TextField(blank=True, editable=False)
    options = models.JSONField(
        default=dict, blank=True, help_text="Kind-specific client options (e.g. Kafka sasl_mechanism)."
    )
    tls_enabled = models.BooleanField(default=False)
    tls_verify = models.BooleanField(default=True)
    tls_ca_cert = models.TextField(blank=True, help_text="PEM CA bundle (public; not secret).")
    tls_client_cert = models.TextField(blank=True, help_text="PEM client certificate.")
    tls_client_key_encrypted = models.TextField(blank=True, editable=False)

    health_status = models.CharField(
        max_length=16, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN
    )
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    server_version = models.CharField(max_length=100, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def password(self) -> str:
        return crypto.decrypt(self.password_encrypted)

    def set_password(self, raw: str) -> None:
        self.password_encrypted = crypto.encrypt(raw)

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    @property
    def tls_client_key(self) -> str:
        return crypto.decrypt(self.tls_client_key_encrypted)

    def set_tls_client_key(self, raw: str) -> None:
        self.tls_client_key_encrypted = crypto.encrypt(raw)


class SourceMode(models.TextChoices):
    QUEUE = "queue", "RabbitMQ dead-letter queue"
    TOPIC = "topic", "Kafka dead-letter topic"
    ADVISORY = "advisory", "NATS JetStream max-deliveries / terminated advisories"
    DLQ_STREAM = "dlq_stream", "NATS JetStream application DLQ stream"
    SUBJECT = "subject", "Core NATS DLQ subject (live only)"


class Source(models.Model):
    """One dead-letter location on a connection."""

    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="sources")
    name = models.CharField(max_length=100, unique=True)
    mode = models.CharField(max_length=16, choices=SourceMode.choices)
    address = models.CharField(
        max_length=500, help_text="Queue name, topic name, stream name (advisory / DLQ stream) or subject."
    )
    options = models.JSONField(default=dict, blank=True, help_text="Kind-specific harvest options.")
    enabled = models.BooleanField(default=True)
    remove_after_harvest = models.BooleanField(
        default=True,
        help_text="Remove the broker copy once stored (RabbitMQ ack / NATS ack). Kafka always keeps it.",
    )
    max_redrives = models.PositiveIntegerField(
        default=5, help_text="Loop guard: a message redriven this many times is parked."
    )
    cursor = models.JSONField(default=dict, blank=True, help_text="Adapter-owned harvest position.")
    auto_retry = models.BooleanField(
        default=False,
        help_text="Redrive new failures automatically after a backoff, up to the attempt limit.",
    )
    auto_retry_max_attempts = models.PositiveIntegerField(default=3)
    auto_retry_backoff_seconds = models.PositiveIntegerField(
        default=60, help_text="Wait before the first automatic retry; doubles for each later attempt."
    )

    harvested_total = models.BigIntegerField(default=0)
    backlog = models.BigIntegerField(null=True, blank=True)
    last_harvest_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "mode", "address"], name="source_unique_location"),
        ]

    def __str__(self) -> str:
        return self.name


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

    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="dead_letters")
    position = models.CharField(max_length=600)

    payload = models.BinaryField(default=b"")
    payload_available = models.BooleanField(default=True)
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

    reason = models.CharField(max_length=100, blank=True, db_index=True)
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
        ErrorGroup, on_delete=models.SET_NULL, null=True, blank=True, related_name="dead_letters"
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
    batch_size = models.PositiveIntegerField(default=100)
    override_loop_guard = models.BooleanField(default=False)
    use_revisions = models.BooleanField(
        default=True, help_text="Send a message's latest edited revision instead of the original."
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

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "dead_letter"], name="attempt_unique_per_job"),
        ]
        indexes = [
            models.Index(fields=["job", "status", "id"], name="attempt_job_status"),
            models.Index(
                fields=["dead_letter"],
                name="attempt_active_message",
                condition=Q(status__in=["pending", "claimed"]),
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} message {self.dead_letter_id}: {self.status}"


class AuditEvent(models.Model):
    """An append-only record of a state-changing action (UI, API, admin, CLI or policy)."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True, help_text="Kept when the user is deleted.")
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    count = models.PositiveIntegerField(default=0)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action}"


class ApiToken(models.Model):
    """An API token for automation. Only a SHA-256 hash of the key is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="First characters of the key, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class Heartbeat(models.Model):
    """Liveness of the long-running parts (harvester processes, Celery workers)."""

    component = models.CharField(max_length=32)
    instance = models.CharField(max_length=200, help_text="host:pid")
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["component", "instance"], name="heartbeat_unique")]

    def __str__(self) -> str:
        return f"{self.component} {self.instance} @ {self.last_seen:%H:%M:%S}"


class AlertKind(models.TextChoices):
    NEW_ERROR_GROUP = "new_error_group", "A new error group appears"
    BACKLOG = "backlog", "A source's broker backlog crosses a threshold"
    FAILURE_RATE = "failure_rate", "Failures per window cross a threshold"
    JOB_FAILED = "job_failed", "A redrive job ends with failures"


class AlertChannel(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (JSON POST)"
    EMAIL = "email", "Email"


class AlertRule(models.Model):
    """When to alert and where to send it. One alert per rule and subject per window (dedup)."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    source = models.ForeignKey(
        Source,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="Only this source (empty = every source).",
    )
    threshold = models.PositiveIntegerField(default=0, help_text="Backlog size or failures per window.")
    window_minutes = models.PositiveIntegerField(
        default=15, help_text="Evaluation and de-duplication window."
    )
    channel = models.CharField(max_length=16, choices=AlertChannel.choices)
    target = models.CharField(max_length=1000, help_text="Webhook URL, or comma-separated email addresses.")
    slack_format = models.BooleanField(default=False, help_text='Send a Slack-compatible {"text": ...} body.')
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        from dlqadmin.services.alerts import validate_target

        validate_target(self.channel, self.target)


class AlertDeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class AlertDelivery(models.Model):
    """One alert fired by a rule, and whether it reached its channel."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="deliveries")
    dedup_key = models.CharField(max_length=200)
    window_start = models.DateTimeField()
    subject = models.CharField(max_length=300)
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=AlertDeliveryStatus.choices, default=AlertDeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "dedup_key", "window_start"], name="alert_once_per_window"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rule.name}: {self.subject} ({self.status})"
