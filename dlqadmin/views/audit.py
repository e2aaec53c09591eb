"""Audit log: read-only, newest first, filterable by action and actor."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.views.decorators.http import require_GET

from dlqadmin import permissions
from dlqadmin.forms import AuditFilterForm
from dlqadmin.models import AuditEvent

from .common import page, requires


@require_GET
@requires(permissions.VIEW_AUDIT)
def audit_list(request):
    qs = AuditEvent.objects.order_by("-created_at", "-id")
    form = AuditFilterForm(request.GET)
    valid = form.is_valid()
    action = form.cleaned_data.get("action", "") if valid else ""
    actor = form.cleaned_data.get("actor", "") if valid else ""
    if action:
        qs = qs.filter(action__startswith=action)
    if actor:
        qs = qs.filter(actor_name__iexact=actor)
    events = Paginator(qs if valid else qs.none(), 100).get_page(request.GET.get("page"))
    actions = AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct()[:200]
    errors = {name: "; ".join(messages) for name, messages in form.errors.items()}
    return page(
        request,
        "dlqadmin/audit.html",
        {
            "page_obj": events,
            "action": action,
            "actor": actor,
            "actions": actions,
            "errors": errors,
            "nav": "audit",
        },
        status=400 if errors else 200,
    )
