"""The schema store in the Django admin: saved and deleted through dlqadmin/services/schemas.py,
so an upload here is checked by the same rule as on the Schemas page and in the API (the
definition loads; .proto files compile) and audited."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from dlqadmin import permissions
from dlqadmin.forms import MultipleFileField
from dlqadmin.models import StoredSchema
from dlqadmin.proxies import client_ip
from dlqadmin.services.schemas import (
    STORED_SCHEMA_FIELDS,
    stored_schema_compile,
    stored_schema_delete,
    stored_schema_save,
)

from .operations import RuleAdmin


class StoredSchemaAdminForm(forms.ModelForm):
    proto_files = MultipleFileField(
        required=False,
        label=".proto files",
        help_text="Protobuf: the main .proto file and every file it imports, chosen together; "
        "compiled into the definition (leave the definition empty).",
    )

    class Meta:
        model = StoredSchema
        fields = [
            "name",
            "kind",
            "definition",
            "proto_files",
            "message_type",
            "sources",
            "header",
            "header_value",
            "enabled",
        ]
        widgets = {
            "definition": forms.Textarea(attrs={"rows": 8, "class": "vLargeTextField", "spellcheck": "false"})
        }

    MAX_UPLOAD = 1024 * 1024

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["definition"].required = False

    def clean(self):
        data = super().clean()
        uploads = data.get("proto_files") or []
        if uploads:
            if sum(upload.size for upload in uploads) > self.MAX_UPLOAD:
                raise ValidationError({"proto_files": f"larger than {self.MAX_UPLOAD} bytes"})
            try:
                files = {upload.name: upload.read().decode("utf-8") for upload in uploads}
            except UnicodeDecodeError:
                raise ValidationError({"proto_files": "not UTF-8 text"}) from None
            # the service's compile: the same rule and messages as the API and the Schemas page
            data["definition"] = stored_schema_compile(kind=data.get("kind") or "", proto_files=files)
        elif not data.get("definition"):
            raise ValidationError({"definition": "paste the schema, or choose .proto files"})
        return data


@admin.register(StoredSchema)
class StoredSchemaAdmin(RuleAdmin):
    """Everyone who may read messages may look; admins (manage connections) write."""

    permission = permissions.MANAGE_CONNECTIONS
    form = StoredSchemaAdminForm
    list_display = ["name", "kind", "message_type", "header", "header_value", "enabled", "updated_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "message_type", "header", "header_value"]
    filter_horizontal = ["sources"]
    readonly_fields = ["created_at", "updated_at"]

    def has_view_permission(self, request, obj=None):
        return permissions.can(request.user, permissions.VIEW)

    def has_module_permission(self, request):
        return permissions.can(request.user, permissions.VIEW)

    def save_model(self, request, obj, form, change):
        data = {k: form.cleaned_data[k] for k in STORED_SCHEMA_FIELDS if k in form.cleaned_data}
        saved = stored_schema_save(
            actor=request.user,
            # the stored row, not the form's already-changed instance: the audit names what changed
            schema=StoredSchema.objects.get(pk=obj.pk) if change else None,
            sources=list(form.cleaned_data.get("sources") or []),
            remote_addr=client_ip(request),
            **data,
        )
        obj.pk = saved.pk

    def save_related(self, request, form, formsets, change):
        """The service bound the sources (and audited them) in ``save_model``."""

    def delete_model(self, request, obj):
        stored_schema_delete(actor=request.user, schema=obj, remote_addr=client_ip(request))
