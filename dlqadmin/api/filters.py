"""Query-string filters for the simple lists (django-filter).

Messages are NOT filtered here: they use the one filter language,
:class:`dlqadmin.selectors.DeadLetterFilter`, exactly as the dashboard and redrive jobs do.
"""

from __future__ import annotations

from django import forms
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField

from dlqadmin.models import (
    ApiToken,
    AuditEvent,
    BrokerKind,
    Connection,
    ErrorGroup,
    ErrorGroupStatus,
    RedriveJob,
    RedriveJobStatus,
    Source,
    SourceMode,
)
from dlqadmin.validators import parse_instant


class InstantField(IsoDateTimeField):
    """ISO-8601, converted to UTC by ``parse_instant``: an offset PostgreSQL would refuse
    (+20:51) or a time beyond year 9999 in UTC is a 400 with the reason, never a 500."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return parse_instant(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class InstantFilter(filters.IsoDateTimeFilter):
    field_class = InstantField


class ConnectionFilter(filters.FilterSet):
    kind = filters.ChoiceFilter(choices=BrokerKind.choices)

    class Meta:
        model = Connection
        fields = ["kind"]


class SourceFilter(filters.FilterSet):
    connection = filters.ModelChoiceFilter(queryset=Connection.objects.all())
    mode = filters.ChoiceFilter(choices=SourceMode.choices)
    enabled = filters.BooleanFilter()

    class Meta:
        model = Source
        fields = ["connection", "mode", "enabled"]


class ErrorGroupFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=ErrorGroupStatus.choices, help_text="Repeatable.")
    source = filters.ModelChoiceFilter(queryset=Source.objects.all())
    reason = filters.CharFilter()

    class Meta:
        model = ErrorGroup
        fields = ["status", "source", "reason"]


class RedriveJobFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=RedriveJobStatus.choices, help_text="Repeatable.")

    class Meta:
        model = RedriveJob
        fields = ["status"]


class AuditEventFilter(filters.FilterSet):
    action = filters.CharFilter(help_text="Exact action, e.g. redrive.create, messages.discard.")
    action_prefix = filters.CharFilter(
        field_name="action", lookup_expr="startswith", help_text="e.g. redrive. for every redrive action."
    )
    actor = filters.CharFilter(field_name="actor_name", help_text="Username (or 'system').")
    target_type = filters.CharFilter()
    target_id = filters.CharFilter()
    since = InstantFilter(field_name="created_at", lookup_expr="gte")
    until = InstantFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["action", "action_prefix", "actor", "target_type", "target_id", "since", "until"]


class TokenFilter(filters.FilterSet):
    user = filters.CharFilter(field_name="user__username", help_text="Admins: tokens of this username.")
    active = filters.BooleanFilter(field_name="revoked_at", lookup_expr="isnull")

    class Meta:
        model = ApiToken
        fields = ["user", "active"]
