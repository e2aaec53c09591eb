"""Audit trail, API tokens and component heartbeats."""

from django.conf import settings
from django.db import models
from django.utils import timezone


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


#: a harvester replica beats at least this often while it runs (after every source of a pass)
HARVESTER_BEAT_SECONDS = 5.0
#: a replica not heard of for this long is shown as stopped (three missed beats)
SILENT_SECONDS = 3 * HARVESTER_BEAT_SECONDS


class Heartbeat(models.Model):
    """Liveness of the long-running parts (harvester processes, Celery workers)."""

    component = models.CharField(max_length=32)
    instance = models.CharField(max_length=200, help_text="host:pid")
    last_seen = models.DateTimeField(default=timezone.now)
    #: what the replica holds and did (harvester: sources, partitions per source, last batch;
    #: ``stopped_at`` once it shut down cleanly)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["component", "instance"], name="heartbeat_unique")]

    def __str__(self) -> str:
        return f"{self.component} {self.instance} @ {self.last_seen:%H:%M:%S}"
