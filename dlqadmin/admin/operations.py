"""Redrive jobs, the audit trail and alerts in the Django admin (jobs and audit are read-only)."""

from __future__ import annotations

from django.contrib import admin

from dlqadmin import permissions
from dlqadmin.models import AlertDelivery, AlertRule, AuditEvent, MaskingRule, RedriveAttempt, RedriveJob
from dlqadmin.proxies import client_ip
from dlqadmin.services.rules import (
    ALERT_RULE_FIELDS,
    MASKING_RULE_FIELDS,
    alert_rule_delete,
    alert_rule_save,
    masking_rule_delete,
    masking_rule_save,
)

from .base import ModelAdmin, ReadOnlyAdmin


class RedriveAttemptInline(admin.TabularInline):
    model = RedriveAttempt
    extra = 0
    can_delete = False
    fields = [
        "dead_letter",
        "status",
        "tries",
        "destination",
        "broker_position",
        "error",
        "finished_at",
        "holds",
        "lease_token",
        "lease_expires_at",
    ]
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


class RuleAdmin(ModelAdmin):
    """Rules are saved and deleted through dlqadmin/services/rules.py (role check + audit)."""

    permission: str

    def _may(self, request) -> bool:
        return permissions.can(request.user, self.permission)

    def has_add_permission(self, request):
        return self._may(request)

    def has_change_permission(self, request, obj=None):
        return self._may(request)

    def has_delete_permission(self, request, obj=None):
        return self._may(request)

    def has_view_permission(self, request, obj=None):
        return self._may(request)

    def has_module_permission(self, request):
        return self._may(request)

    def delete_queryset(self, request, queryset):
        for rule in queryset:
            self.delete_model(request, rule)


@admin.register(AlertRule)
class AlertRuleAdmin(RuleAdmin):
    permission = permissions.MANAGE_ALERTS
    list_display = ["name", "kind", "source", "threshold", "window_minutes", "channel", "target", "enabled"]
    list_filter = ["kind", "channel", "enabled"]

    def save_model(self, request, obj, form, change):
        data = {k: form.cleaned_data[k] for k in ALERT_RULE_FIELDS if k in form.cleaned_data}
        saved = alert_rule_save(
            actor=request.user, rule=obj if change else None, remote_addr=client_ip(request), **data
        )
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        alert_rule_delete(actor=request.user, rule=obj, remote_addr=client_ip(request))


@admin.register(MaskingRule)
class MaskingRuleAdmin(RuleAdmin):
    permission = permissions.MANAGE_MASKING
    list_display = ["name", "kind", "pattern", "replacement", "enabled"]
    list_filter = ["kind", "enabled"]
    filter_horizontal = ["sources"]

    def save_model(self, request, obj, form, change):
        data = {k: form.cleaned_data[k] for k in MASKING_RULE_FIELDS if k in form.cleaned_data}
        saved = masking_rule_save(
            actor=request.user, rule=obj if change else None, remote_addr=client_ip(request), **data
        )
        obj.pk = saved.pk

    def save_related(self, request, form, formsets, change):
        if "sources" not in form.changed_data:
            return
        masking_rule_save(
            actor=request.user,
            rule=form.instance,
            sources=list(form.cleaned_data["sources"]),
            remote_addr=client_ip(request),
        )

    def delete_model(self, request, obj):
        masking_rule_delete(actor=request.user, rule=obj, remote_addr=client_ip(request))


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "rule", "subject", "status", "attempts", "error", "sent_at"]
    list_filter = ["status", "rule"]
