"""Dead letters and error groups in the Django admin.

Users see only messages and groups of sources they may see; what is shown of payload, headers
and error text is masked for masked users (one Masker per request, dlqadmin.services.masking);
actions call the services with the user as actor, so they act only on visible messages.
"""

from __future__ import annotations

import contextlib
import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils.html import format_html

from brokers import headers as header_codec
from dlqadmin.models import DeadLetter, ErrorGroup, ErrorGroupStatus
from dlqadmin.proxies import client_ip
from dlqadmin.selectors import DeadLetterFilter, error_groups_for, limit_to_visible
from dlqadmin.selectors_dashboard import job_skipped_reasons
from dlqadmin.services.audit import audit_record
from dlqadmin.services.dead_letters import (
    dead_letters_discard,
    dead_letters_resolve,
    error_group_set_auto_retry,
    error_group_set_status,
)
from dlqadmin.services.export import iter_csv, iter_jsonl
from dlqadmin.services.masking import Masker
from dlqadmin.services.redrive.jobs import RedriveError, redrive_job_create
from dlqadmin.services.redrive.options import MAX_SELECTION_IDS, ids_message

from .base import ModelAdmin, ReadOnlyAdmin, RolePermissions, per_request

PRE = "<pre style='white-space:pre-wrap;max-height:30em;overflow:auto'>{}</pre>"


def _ids(modeladmin, request, queryset) -> list[int] | None:
    """The selected ids, or None (and why) past the one id limit of a selection, like the
    dashboard and the API: nothing is done then, rather than a part of the selection."""
    ids = list(queryset.values_list("pk", flat=True)[: MAX_SELECTION_IDS + 1])
    if len(ids) > MAX_SELECTION_IDS:
        given = queryset.count()
        modeladmin.message_user(
            request,
            f"Nothing done: {ids_message(given)}. Narrow the selection, or act on every match of a "
            "filter from the dashboard (“select all matching”), the API or manage.py.",
            messages.ERROR,
        )
        return None
    return ids


def _start_redrive(
    modeladmin, request, ids: list[int] | None = None, filters: DeadLetterFilter | None = None
) -> None:
    try:
        job = redrive_job_create(actor=request.user, ids=ids, filters=filters, remote_addr=client_ip(request))
    except RedriveError as exc:
        hint = ""
        if "destination" in exc.errors:
            hint = " Redrive them from the dashboard or the API with a destination override."
        modeladmin.message_user(request, f"Redrive not started: {exc}.{hint}", messages.ERROR)
        return
    except PermissionDenied as exc:
        modeladmin.message_user(request, str(exc), messages.ERROR)
        return
    url = reverse("admin:dlqadmin_redrivejob_change", args=[job.pk])
    modeladmin.message_user(
        request,
        format_html(
            'Redrive job <a href="{}">#{}</a> started for {}{} message(s) ({} skipped){}.',
            url,
            job.pk,
            "about " if job.claiming else "",
            job.total - job.skipped,
            job.skipped,
            "; the worker gathers the rest of the selection" if job.claiming else "",
        ),
        messages.SUCCESS,
    )
    for reason, n in job_skipped_reasons(job):  # e.g. the ones that need a destination, and why
        modeladmin.message_user(request, f"Not sent: {n} message(s): {reason}", messages.WARNING)


def _masker(request) -> Masker:
    return per_request(request, "masker", lambda: [Masker(request.user)])[0]


def _payload_html(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
        with contextlib.suppress(ValueError, RecursionError):
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except UnicodeDecodeError:
        text = "(binary, hex) " + data[:4096].hex(" ")
    return format_html(PRE, text[:65536])


def _dead_letter_display(request) -> list:
    """[short error, error text, stack trace, error group, read notes, payload, headers, key,
    properties] as this user may see them."""
    masker = _masker(request)
    seen_by_pk: dict = {}

    def seen(obj):
        """``obj`` as this user may see it, masked once per request however many fields show it."""
        if obj.pk not in seen_by_pk:
            seen_by_pk[obj.pk] = masker.message(obj)
        return seen_by_pk[obj.pk]

    @admin.display(description="Error")
    def short_error(obj):
        return masker.text(obj.source_id, obj.error_message)[:120]

    @admin.display(description="Error message")
    def error_text(obj):
        return format_html(PRE, masker.text(obj.source_id, obj.error_message))

    @admin.display(description="Stack trace")
    def stack_trace(obj):
        return format_html(PRE, masker.text(obj.source_id, obj.stacktrace))

    @admin.display(description="Error group")
    def error_group(obj):
        group = obj.error_group
        if group is None:
            return "–"
        pattern = masker.text(group.source_id, group.message_pattern)[:80]
        url = reverse("admin:dlqadmin_errorgroup_change", args=[group.pk])
        label = group.error_class or group.reason
        return format_html('<a href="{}">#{} {}: {}</a>', url, group.pk, label, pattern)

    @admin.display(description="Payload")
    def payload_preview(obj):
        return _payload_html(seen(obj).payload)

    @admin.display(description="Headers")
    def headers_table(obj):
        rows = header_codec.text_pairs(seen(obj).headers or [])
        return format_html(
            "<pre style='white-space:pre-wrap'>{}</pre>",
            "\n".join(f"{name} ({kind}): {text}" for name, kind, text in rows) or "(none)",
        )

    @admin.display(description="Key")
    def record_key(obj):
        key = seen(obj).key
        return "–" if key is None else _payload_html(key)

    @admin.display(description="Could not read")
    def read_notes(obj):
        notes = [masker.text(obj.source_id, note) for note in obj.read_notes or []]
        return format_html(PRE, "\n".join(notes)) if notes else "–"

    @admin.display(description="Broker properties")
    def broker_properties(obj):
        shown = seen(obj).properties or {}
        return format_html(PRE, json.dumps(shown, indent=2, ensure_ascii=False, default=str))

    return [
        short_error,
        error_text,
        stack_trace,
        error_group,
        read_notes,
        payload_preview,
        headers_table,
        record_key,
        broker_properties,
    ]


@admin.register(DeadLetter)
class DeadLetterAdmin(RolePermissions, ReadOnlyAdmin):
    list_filter = [
        "status",
        "reason",
        ("source", admin.RelatedOnlyFieldListFilter),  # only visible sources are offered
        "source__connection__kind",
    ]
    search_fields = [
        "error_message",
        "error_class",
        "position",
        "origin_queue",
        "origin_topic",
        "origin_subject",
    ]
    date_hierarchy = "failed_at"
    list_select_related = ["source", "error_group"]
    show_full_result_count = False
    # shown through the per-request (masked) callables instead
    exclude = [
        "payload",
        "key",
        "headers",
        "properties",
        "error_message",
        "stacktrace",
        "error_group",
        "read_notes",
    ]
    actions = ["redrive_selected", "discard_selected", "resolve_selected", "export_jsonl", "export_csv"]

    def get_queryset(self, request):
        return limit_to_visible(super().get_queryset(request), request.user)

    def get_search_fields(self, request):
        if _masker(request).active:  # a search must not confirm masked error text
            return [f for f in self.search_fields if f != "error_message"]
        return self.search_fields

    def get_list_display(self, request):
        short_error = per_request(request, "dead_letter", lambda: _dead_letter_display(request))[0]
        return [
            "id",
            "failed_at",
            "source",
            "status",
            "reason",
            "error_class",
            short_error,
            "original_destination",
            "payload_size",
            "redrive_count",
        ]

    def get_readonly_fields(self, request, obj=None):
        shown = per_request(request, "dead_letter", lambda: _dead_letter_display(request))
        return [*super().get_readonly_fields(request, obj), *shown[1:]]

    @admin.action(description="Redrive selected messages", permissions=["redrive"])
    def redrive_selected(self, request, queryset):
        ids = _ids(self, request, queryset)
        if ids is not None:
            _start_redrive(self, request, ids)

    @admin.action(description="Discard selected messages", permissions=["discard"])
    def discard_selected(self, request, queryset):
        self._settle(request, queryset, dead_letters_discard, "Discarded")

    @admin.action(description="Resolve selected messages", permissions=["resolve"])
    def resolve_selected(self, request, queryset):
        self._settle(request, queryset, dead_letters_resolve, "Resolved")

    def _settle(self, request, queryset, service, done: str) -> None:
        ids = _ids(self, request, queryset)
        if ids is not None:
            count = service(actor=request.user, ids=ids, remote_addr=client_ip(request))
            self.message_user(request, f"{done} {count} message(s).", messages.SUCCESS)

    def _export(self, request, queryset, fmt: str):
        qs = limit_to_visible(queryset, request.user).order_by("id")
        audit_record(
            actor=request.user,
            action="messages.export",
            count=qs.count(),
            detail={"format": fmt},
            remote_addr=client_ip(request),
        )
        body = iter_jsonl(qs, user=request.user) if fmt == "jsonl" else iter_csv(qs, user=request.user)
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


def _group_display(request) -> list:
    masker = _masker(request)

    @admin.display(description="Message pattern")
    def pattern(obj):
        return masker.text(obj.source_id, obj.message_pattern)

    @admin.display(description="Sample message")
    def sample(obj):
        return masker.text(obj.source_id, obj.sample_message)

    return [pattern, sample]


@admin.register(ErrorGroup)
class ErrorGroupAdmin(RolePermissions, ModelAdmin):
    list_filter = ["status", ("source", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["message_pattern", "error_class"]
    exclude = ["message_pattern", "sample_message"]  # shown masked, through _group_display
    readonly_fields = [
        "fingerprint",
        "source",
        "error_class",
        "reason",
        "count",
        "first_seen",
        "last_seen",
        "status",  # changed by the actions below, through error_group_set_status
        "status_changed_at",
    ]
    actions = ["resolve_groups", "ignore_groups", "redrive_groups"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(pk__in=error_groups_for(request.user).values("pk"))

    def get_search_fields(self, request):
        return ["error_class"] if _masker(request).active else self.search_fields

    def get_list_display(self, request):
        pattern = per_request(request, "group", lambda: _group_display(request))[0]
        return [pattern, "error_class", "reason", "source", "count", "status", "first_seen", "last_seen"]

    def get_readonly_fields(self, request, obj=None):
        shown = per_request(request, "group", lambda: _group_display(request))
        return [*super().get_readonly_fields(request, obj), *shown]

    def save_model(self, request, obj, form, change):
        """Only the auto-retry override is editable here: through the service, which audits (the
        other columns are the harvester's, never written back from this form)."""
        if "auto_retry" in form.changed_data:
            error_group_set_auto_retry(
                actor=request.user,
                group=obj,
                auto_retry=form.cleaned_data["auto_retry"],
                remote_addr=client_ip(request),
            )

    def _set_status(self, request, queryset, status):
        for group in queryset:
            error_group_set_status(
                actor=request.user, group=group, status=status, remote_addr=client_ip(request)
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
        """A filter job over the groups (like the dashboard's group redrive, of any size): the
        request claims the first DLQADMIN_REDRIVE_CLAIM_IN_REQUEST messages, the worker the rest."""
        groups = sorted(queryset.values_list("pk", flat=True))
        if groups:  # an empty filter would select every message
            _start_redrive(self, request, filters=DeadLetterFilter(error_groups=groups))
