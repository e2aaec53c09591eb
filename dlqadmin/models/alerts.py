"""Alert rules and their deliveries."""

from django.core.exceptions import ValidationError
from django.db import models

from dlqadmin.validators import validate_email_list, validate_webhook_url

from .brokers import Source


class AlertKind(models.TextChoices):
    NEW_ERROR_GROUP = "new_error_group", "A new error group appears"
    BACKLOG = "backlog", "A source's broker backlog crosses a threshold"
    FAILURE_RATE = "failure_rate", "Failures per window cross a threshold"
    JOB_FAILED = "job_failed", "A redrive job ends with failures"


class AlertChannel(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (JSON POST)"
    EMAIL = "email", "Email"


#: How a rule's target is checked for its channel (``AlertRule.clean``: forms, API and admin).
TARGET_VALIDATORS = {AlertChannel.WEBHOOK: validate_webhook_url, AlertChannel.EMAIL: validate_email_list}


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
        validate = TARGET_VALIDATORS.get(self.channel)
        if validate is not None:
            try:
                validate(self.target)
            except ValidationError as exc:
                raise ValidationError({"target": exc.messages}) from None


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
