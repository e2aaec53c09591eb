"""Connections and sources in the Django admin: saved and deleted through the services."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction

from brokers.base import BrokerError
from dlqadmin.models import Connection, Source
from dlqadmin.proxies import client_ip
from dlqadmin.selectors import visible_sources
from dlqadmin.services.audit import audit_record
from dlqadmin.services.connections import (
    CONNECTION_FIELDS,
    connection_create,
    connection_delete,
    connection_update,
    connection_validate,
)
from dlqadmin.services.harvest.prepare import prepare_state
from dlqadmin.services.sources import (
    SOURCE_FIELDS,
    harvest_now_summary,
    source_create,
    source_delete,
    source_harvest_now,
    source_update,
    source_validate,
)

from .base import ModelAdmin, RolePermissions, ServiceValidatedForm


class ConnectionForm(ServiceValidatedForm):
    validate_with = staticmethod(connection_validate)

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
    new_schema_registry_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Schema Registry password or bearer token; write-only. Leave empty to keep it.",
    )
    clear_schema_registry_secret = forms.BooleanField(
        required=False, help_text="Remove the stored Schema Registry secret."
    )

    class Meta:
        model = Connection
        fields = list(CONNECTION_FIELDS)

    @property
    def credentials(self) -> dict:
        """``password`` / ``tls_client_key`` for the services: None keeps, "" clears."""
        password = self.cleaned_data.get("new_password") or None
        if self.cleaned_data.get("clear_password"):
            password = ""
        registry_secret = self.cleaned_data.get("new_schema_registry_secret") or None
        if self.cleaned_data.get("clear_schema_registry_secret"):
            registry_secret = ""
        return {
            "password": password,
            "tls_client_key": self.cleaned_data.get("new_tls_client_key") or None,
            "schema_registry_secret": registry_secret,
        }


@admin.register(Connection)
class ConnectionAdmin(ModelAdmin):
    form = ConnectionForm
    list_display = [
        "name",
        "kind",
        "url",
        "health_status",
        "server_version",
        "last_checked_at",
        "health_checked_by",
        "last_error",
    ]
    list_filter = ["kind", "health_status"]
    search_fields = ["name", "url"]
    readonly_fields = [
        "health_status",
        "last_checked_at",
        "health_checked_by",
        "last_error",
        "server_version",
        "latency_ms",
        "password_set",
    ]

    @admin.display(boolean=True, description="Password stored")
    def password_set(self, obj):
        return obj.has_password

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data[name] for name in CONNECTION_FIELDS if name in form.cleaned_data}
        credentials = form.credentials
        if change:
            saved = connection_update(
                actor=request.user, connection=obj, remote_addr=client_ip(request), **credentials, **data
            )
        else:
            saved = connection_create(
                actor=request.user,
                password=credentials["password"] or "",
                tls_client_key=credentials["tls_client_key"] or "",
                schema_registry_secret=credentials["schema_registry_secret"] or "",
                remote_addr=client_ip(request),
                **data,
            )
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        connection_delete(actor=request.user, connection=obj, remote_addr=client_ip(request))

    def delete_queryset(self, request, queryset):
        for connection in queryset:
            self.delete_model(request, connection)


class SourceForm(ServiceValidatedForm):
    validate_with = staticmethod(source_validate)

    class Meta:
        model = Source
        exclude = ["cursor"]

    def _get_validation_exclusions(self):
        # the location constraint (connection, mode, address) and the unique name are checked
        # by source_validate, with the same messages as the dashboard and the API
        return {*super()._get_validation_exclusions(), "connection"}

    def validate_unique(self):
        """See ``_get_validation_exclusions``: source_validate checks it."""


@admin.register(Source)
class SourceAdmin(RolePermissions, ModelAdmin):
    form = SourceForm
    actions = ["harvest_now"]
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
        "broker_setup",
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
        "broker_setup",
        "prepared_at",
        "prepare_error",
        "prepared_options",
        "auto_retry_held",
    ]

    @admin.display(description="Broker setup")
    def broker_setup(self, obj):
        """Where the broker captures the source's failures (advisory sources), or why not."""
        return prepare_state(obj).text or "-"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(pk__in=visible_sources(request.user).values("pk"))

    def save_model(self, request, obj, form, change):
        data = {name: form.cleaned_data[name] for name in SOURCE_FIELDS if name in form.cleaned_data}
        if change:
            saved = source_update(actor=request.user, source=obj, remote_addr=client_ip(request), **data)
        else:
            saved = source_create(actor=request.user, remote_addr=client_ip(request), **data)
        obj.pk = saved.pk
        # runs after the service's prepare (also on commit): say whether the broker captures it
        transaction.on_commit(lambda: self._report_prepare(request, saved))

    @admin.action(description="Harvest selected sources now", permissions=["harvest"])
    def harvest_now(self, request, queryset):
        """Like the dashboard's "harvest now": each source at most HARVEST_NOW_LIMIT messages,
        one audit event each (dlqadmin.services.sources.source_harvest_now)."""
        for source in queryset.select_related("connection").order_by("name"):
            try:
                report = source_harvest_now(actor=request.user, source=source, remote_addr=client_ip(request))
            except (BrokerError, PermissionDenied) as exc:
                self.message_user(request, f"Harvest of {source.name} failed: {exc}", messages.ERROR)
                continue
            self.message_user(request, harvest_now_summary(source, report), messages.SUCCESS)

    def _report_prepare(self, request, source):
        state = prepare_state(source)
        if state.status == "failed":
            self.message_user(request, f"Source {source.name} is {state.text}", messages.WARNING)
        elif state.status == "ready":
            self.message_user(request, f"Source {source.name}: {state.text}", messages.INFO)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        changed = [name for name in ("allowed_groups", "allowed_users") if name in form.changed_data]
        if changed:  # who may see a source is a security setting: record every change
            source = form.instance
            audit_record(
                actor=request.user,
                action="source.access",
                target=source,
                detail={
                    "name": source.name,
                    "groups": sorted(source.allowed_groups.values_list("name", flat=True)),
                    "users": sorted(u.get_username() for u in source.allowed_users.all()),
                },
                remote_addr=client_ip(request),
            )

    def delete_model(self, request, obj):
        source_delete(actor=request.user, source=obj, remote_addr=client_ip(request))

    def delete_queryset(self, request, queryset):
        for source in queryset:
            self.delete_model(request, source)
