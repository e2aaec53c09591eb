"""Redrive jobs, the audit trail and alerts in the Django admin (jobs and audit are read-only)."""

from __future__ import annotations

from django.contrib import admin

from dlqadmin.models import AlertDelivery, AlertRule, AuditEvent, RedriveAttempt, RedriveJob

from .base import ReadOnlyAdmin


class RedriveAttemptInline(admin.TabularInline):
    model = RedriveAttempt
    extra = 0
    can_delete = False
    fields = ["dead_letter", "status", "tries", "destination", "broker_position", "error", "finished_at"]
    readonly_fields = fields
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(RedriveJob)
class RedriveJobAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "status",
        "created_by",
        "total",
        "succeeded",
        "failed",
        "skipped",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status"]
    inlines = [RedriveAttemptInline]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_name", "action", "target_type", "target_id", "count", "remote_addr"]
    list_filter = ["action"]
    search_fields = ["actor_name", "action", "target_id"]
    date_hierarchy = "created_at"


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "source", "threshold", "window_minutes", "channel", "target", "enabled"]
    list_filter = ["kind", "channel", "enabled"]


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "rule", "subject", "status", "attempts", "error", "sent_at"]
    list_filter = ["status", "rule"]
