"""The audit log's filter form."""

from __future__ import annotations

from django import forms


class AuditFilterForm(forms.Form):
    """The audit log's filters (CharField refuses NUL, which PostgreSQL cannot compare)."""

    action = forms.CharField(required=False, max_length=100)
    actor = forms.CharField(required=False, max_length=150)
