"""The error-group status form."""

from __future__ import annotations

from django import forms

from dlqadmin.models import ErrorGroupStatus


class GroupStatusForm(forms.Form):
    status = forms.ChoiceField(choices=ErrorGroupStatus.choices)
