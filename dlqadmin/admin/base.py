"""What the ModelAdmins share: role-based action permissions, read-only evidence, per-request
display callables."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError

from dlqadmin import permissions


def per_request(request, key: str, build: Callable[[], list]) -> list:
    """``build()`` once per request. Django admin compares fields by identity across
    ``get_fields`` / ``get_readonly_fields``, so callables made for one request (closing over its
    user, e.g. for masking) must be the same objects every time it asks."""
    cache = request.__dict__.setdefault("_dlq_admin_display", {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


class CheckedLookupsChangeList(ChangeList):
    """A list whose query-string lookups PostgreSQL or ``datetime`` would refuse only once the
    query runs (a NUL byte, ``created_at__year=99999``) answers as Django does for any invalid
    lookup, with the list and ``?e=1``, never a 500."""

    def get_queryset(self, request, exclude_parameters=None):
        for key, values in self.filter_params.items():
            for value in values:
                if "\x00" in value:
                    raise IncorrectLookupParameters(f"{key}: NUL byte")
                if key.endswith(("__year", "__month", "__day")) and not _in_range(key, value):
                    raise IncorrectLookupParameters(f"{key}: {value!r} is out of range")
        return super().get_queryset(request, exclude_parameters)


def _in_range(key: str, value: str) -> bool:
    low, high = {"year": (1, 9999), "month": (1, 12), "day": (1, 31)}[key.rsplit("__", 1)[1]]
    return value.isascii() and value.isdigit() and low <= int(value) <= high


class ModelAdmin(admin.ModelAdmin):
    """Every dlqadmin ModelAdmin: bad list lookups are an invalid lookup, not a server error."""

    def get_changelist(self, request, **kwargs):
        return CheckedLookupsChangeList


def _role(permission: str):
    """An admin ``has_<action>_permission`` hook: whether the user holds ``permission``."""

    def has_permission(self, request):
        return permissions.can(request.user, permission)

    return has_permission


class RolePermissions:
    """``has_<action>_permission`` hooks so admin actions follow dlqadmin/permissions.py."""

    has_redrive_permission = _role(permissions.REDRIVE)
    has_discard_permission = _role(permissions.DISCARD)
    has_resolve_permission = _role(permissions.RESOLVE)
    has_export_permission = _role(permissions.EXPORT)
    has_manage_groups_permission = _role(permissions.MANAGE_GROUPS)
    has_harvest_permission = _role(permissions.HARVEST)


class ReadOnlyAdmin(ModelAdmin):
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
