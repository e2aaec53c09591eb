"""What the ModelAdmins share: role-based action permissions, read-only evidence, per-request
display callables."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from dlqadmin import permissions


def client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def per_request(request, key: str, build: Callable[[], list]) -> list:
    """``build()`` once per request. Django admin compares fields by identity across
    ``get_fields`` / ``get_readonly_fields``, so callables made for one request (closing over its
    user, e.g. for masking) must be the same objects every time it asks."""
    cache = request.__dict__.setdefault("_dlq_admin_display", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


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


class ServiceValidatedForm(forms.ModelForm):
    """A ModelForm that also runs the service's validation (``validate_with``) on the instance,
    so the admin shows the same errors the dashboard and the API do before anything is saved."""

    validate_with: Callable = staticmethod(lambda instance: None)

    def _post_clean(self):
        super()._post_clean()
        if not self.errors:
            try:
                self.validate_with(self.instance)
            except ValidationError as exc:
                self._update_errors(exc)
