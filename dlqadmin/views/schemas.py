"""The schema store: list the schemas, upload one (admins), delete one (admins)."""

from __future__ import annotations

from django.contrib import messages as flash
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_http_methods, require_POST

from dlqadmin import permissions
from dlqadmin.forms import StoredSchemaForm
from dlqadmin.models import StoredSchema
from dlqadmin.services.schemas import stored_schema_delete

from .common import client_addr, page, requires


@require_http_methods(["GET", "POST"])
@requires(permissions.VIEW)
def schema_list(request):
    form = StoredSchemaForm()
    status = 200
    if request.method == "POST":
        if not permissions.can(request.user, permissions.MANAGE_CONNECTIONS):
            return redirect("dlq-schemas")
        form = StoredSchemaForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                schema = form.save(actor=request.user, remote_addr=client_addr(request))
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(
                        field
                        if field in form.fields
                        else ("upload" if field in ("definition", "proto_files") else None),
                        errors,
                    )
            else:
                flash.success(request, f"Schema {schema.name} saved.")
                return redirect("dlq-schemas")
        status = 400
    schemas = StoredSchema.objects.prefetch_related("sources").order_by("name")
    return page(
        request, "dlqadmin/schemas.html", {"schemas": schemas, "form": form, "nav": "schemas"}, status=status
    )


@require_POST
@requires(permissions.MANAGE_CONNECTIONS)
def schema_delete(request, pk: int):
    schema = get_object_or_404(StoredSchema, pk=pk)
    stored_schema_delete(actor=request.user, schema=schema, remote_addr=client_addr(request))
    flash.success(request, f"Schema {schema.name} deleted.")
    return redirect("dlq-schemas")
