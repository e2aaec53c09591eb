"""Django admin: every model, with list columns, filters, search and read-only payloads.

Broker credentials are write-only here: the form takes a new password but never shows the
stored one. Dead letters and audit events are read-only (they are evidence).
"""

from __future__ import annotations

import contextlib
import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils.html import format_html

from brokers import headers as header_codec
from dlqadmin import permissions
from dlqadmin.services.dead_letters import dead_letters_discard, dead_letters_resolve, error_group_set_status
from dlqadmin.services.export import iter_csv, iter_jsonl
from dlqadmin.services.redrive import RedriveError, redrive_job_create

from .models import (
    AlertDelivery,
    AlertRule,
    AuditEvent,
    Connection,
    DeadLetter,
    ErrorGroup,
    ErrorGroupStatus,
    RedriveAttempt,
    RedriveJob,
    Source,
)

#: larger selections belong in a filter-based redrive (dashboard, API or `manage.py redrive`)
MAX_ADMIN_SELECTION = 100_000

admin.site.site_header = "dlqadmin"
admin.site.site_title = "dlqadmin"
admin.site.index_title = "Dead letters across RabbitMQ, Kafka and NATS"


class ConnectionForm(forms.ModelForm):
    new_password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the stored password.",
    )
    new_tls_client_key = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="PEM private key; write-only. Leave empty to keep the stored key.",
    )
    clear_password = forms.BooleanField(required=False, help_text="Remove the stored password.")

    class Meta:
        model = Connection
        fields = [
            "name",
            "kind",
            "url",
            "username",
            "options",
            "tls_enabled",
            "tls_verify",
            "tls_ca_cert",
            "tls_client_cert",
        ]

    def save(self, commit=True):
        connection = super().save(commit=False)
        if self.cleaned_data.get("clear_password"):
            connection.set_password("")
        elif self.cleaned_data.get("new_password"):
            connection.set_password(self.cleaned_data["new_password"])
        if self.cleaned_data.get("new_tls_client_key"):
            connection.set_tls_client_key(self.cleaned_data["new_tls_client_key"])
        if commit:
            connection.save()
        return connection


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = ["name", "kind", "url", "health_status", "server_version", "last_checked_at", "last_error"]
    list_filter = ["kind", "health_status"]
    search_fields = ["name", "url"]
    readonly_fields = [
        "health_status",
        "last_checked_at",
        "last_error",
        "server_version",
        "latency_ms",
        "password_set",
    ]

    @admin.display(boolean=True, description="Password stored")
    def password_set(self, obj):
        return obj.has_password


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "connection",
        "mode",
        "address",
        "enabled",
        "harvested_total",
        "backlog",
        "last_harvest_at",
        "last_error",
    ]
    list_filter = ["enabled", "mode", "connection"]
    search_fields = ["name", "address"]
    readonly_fields = [
        "harvested_total",
        "backlog",
        "last_harvest_at",
        "last_error",
        "last_error_at",
        "cursor",
    ]


def _client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR")


def _ids(modeladmin, request, queryset) -> list[int] | None:
    ids = list(queryset.values_list("pk", flat=True)[: MAX_ADMIN_SELECTION + 1])
    if len(ids) > MAX_ADMIN_SELECTION:
        modeladmin.message_user(
            request,
            f"More than {MAX_ADMIN_SELECTION} selected: use a filter redrive (dashboard or API) instead.",
            messages.ERROR,
        )
        return None
    return ids


def _start_redrive(modeladmin, request, ids: list[int]) -> None:
    try:
        job = redrive_job_create(actor=request.user, ids=ids, remote_addr=_client_ip(request))
    except RedriveError as exc:
        modeladmin.message_user(request, f"Redrive not started: {exc}", messages.ERROR)
        return
    except PermissionDenied as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return
    url = reverse("admin:dlqadmin_redrivejob_change", args=[job.pk])
    modeladmin.message_user(
        request,
        format_html(
            'Redrive job <a href="{}">#{}</a> started for {} message(s) ({} skipped).',
            url,
            job.pk,
            job.total - job.skipped,
            job.skipped,
        ),
        messages.SUCCESS,
    )


class RolePermissions:
    """``has_<action>_permission`` hooks so admin actions follow dlqadmin/permissions.py."""

    def has_redrive_permission(self, request):
        return permissions.can(request.user, permissions.REDRIVE)

    def has_discard_permission(self, request):
        return permissions.can(request.user, permissions.DISCARD)

    def has_resolve_permission(self, request):
        return permissions.can(request.user, permissions.RESOLVE)

    def has_export_permission(self, request):
        return permissions.can(request.user, permissions.EXPORT)

    def has_manage_groups_permission(self, request):
        return permissions.can(request.user, permissions.MANAGE_GROUPS)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DeadLetter)
class DeadLetterAdmin(RolePermissions, ReadOnlyAdmin):
    list_display = [
        "id",
        "failed_at",
        "source",
        "status",
        "reason",
        "error_class",
        "short_error",
        "original_destination",
        "payload_size",
        "redrive_count",
    ]
    list_filter = ["status", "reason", "source", "source__connection__kind"]
    search_fields = [
        "error_message",
        "error_class",
        "position",
        "origin_queue",
        "origin_topic",
        "origin_subject",
    ]
    date_hierarchy = "failed_at"
    list_select_related = ["source"]
    show_full_result_count = False
    exclude = ["payload", "key", "headers"]
    readonly_fields = ["payload_preview", "headers_table"]
    actions = ["redrive_selected", "discard_selected", "resolve_selected", "export_jsonl", "export_csv"]

    @admin.action(description="Redrive selected messages", permissions=["redrive"])
    def redrive_selected(self, request, queryset):
        ids = _ids(self, request, queryset)
        if ids is not None:
            _start_redrive(self, request, ids)

    @admin.action(description="Discard selected messages", permissions=["discard"])
    def discard_selected(self, request, queryset):
        ids = _ids(self, request, queryset)
        if ids is not None:
            count = dead_letters_discard(actor=request.user, ids=ids, remote_addr=_client_ip(request))
            self.message_user(request, f"Discarded {count} message(s).", messages.SUCCESS)

    @admin.action(description="Resolve selected messages", permissions=["resolve"])
    def resolve_selected(self, request, queryset):
        ids = _ids(self, request, queryset)
        if ids is not None:
            count = dead_letters_resolve(actor=request.user, ids=ids, remote_addr=_client_ip(request))
            self.message_user(request, f"Resolved {count} message(s).", messages.SUCCESS)

    def _export(self, request, queryset, fmt: str):
        from dlqadmin.services.audit import audit_record

        qs = queryset.order_by("id")
        audit_record(
            actor=request.user,
            action="messages.export",
            count=qs.count(),
            detail={"format": fmt},
            remote_addr=_client_ip(request),
        )
        body = iter_jsonl(qs) if fmt == "jsonl" else iter_csv(qs)
        content_type = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
        response = StreamingHttpResponse(body, content_type=f"{content_type}; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="dead-letters.{fmt}"'
        return response

    @admin.action(description="Export selected as JSON-lines", permissions=["export"])
    def export_jsonl(self, request, queryset):
        return self._export(request, queryset, "jsonl")

    @admin.action(description="Export selected as CSV", permissions=["export"])
    def export_csv(self, request, queryset):
        return self._export(request, queryset, "csv")

    @admin.display(description="Error")
    def short_error(self, obj):
        return (obj.error_message or "")[:120]

    @admin.display(description="Payload")
    def payload_preview(self, obj):
        raw = bytes(obj.payload)
        try:
            text = raw.decode("utf-8")
            with contextlib.suppress(ValueError):
                text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except UnicodeDecodeError:
            text = "(binary, hex) " + raw[:4096].hex(" ")
        return format_html(
            "<pre style='white-space:pre-wrap;max-height:30em;overflow:auto'>{}</pre>", text[:65536]
        )

    @admin.display(description="Headers")
    def headers_table(self, obj):
        rows = header_codec.text_pairs(obj.headers or [])
        return format_html(
            "<pre style='white-space:pre-wrap'>{}</pre>",
            "\n".join(f"{name} ({kind}): {text}" for name, kind, text in rows) or "(none)",
        )


@admin.register(ErrorGroup)
class ErrorGroupAdmin(RolePermissions, admin.ModelAdmin):
    list_display = [
        "message_pattern",
        "error_class",
        "reason",
        "source",
        "count",
        "status",
        "first_seen",
        "last_seen",
    ]
    list_filter = ["status", "source"]
    search_fields = ["message_pattern", "error_class"]
    readonly_fields = [
        "fingerprint",
        "source",
        "error_class",
        "reason",
        "message_pattern",
        "sample_message",
        "count",
        "first_seen",
        "last_seen",
        "status_changed_at",
    ]
    actions = ["resolve_groups", "ignore_groups", "redrive_groups"]

    def _set_status(self, request, queryset, status):
        for group in queryset:
            error_group_set_status(
                actor=request.user, group=group, status=status, remote_addr=_client_ip(request)
            )
        self.message_user(request, f"{queryset.count()} group(s) marked {status}.", messages.SUCCESS)

    @admin.action(description="Mark resolved", permissions=["manage_groups"])
    def resolve_groups(self, request, queryset):
        self._set_status(request, queryset, ErrorGroupStatus.RESOLVED)

    @admin.action(description="Ignore", permissions=["manage_groups"])
    def ignore_groups(self, request, queryset):
        self._set_status(request, queryset, ErrorGroupStatus.IGNORED)

    @admin.action(description="Redrive every message of the selected groups", permissions=["redrive"])
    def redrive_groups(self, request, queryset):
        ids = _ids(self, request, DeadLetter.objects.filter(error_group__in=queryset))
        if ids is not None:
            _start_redrive(self, request, ids)


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
