"""Overview: connection health, per-source backlog, failures over time, top groups, running jobs."""

from __future__ import annotations

from django.views.decorators.http import require_GET

from dlqadmin import permissions, selectors_dashboard
from dlqadmin.services.masking import Masker

from .common import page, requires
from .presenters import show_groups


@require_GET
@requires(permissions.VIEW)
def overview(request):
    user = request.user
    jobs = selectors_dashboard.active_jobs()
    return page(
        request,
        "dlqadmin/overview.html",
        {
            "connections": selectors_dashboard.connections_overview(user=user),
            "status_counts": selectors_dashboard.status_counts(user=user),
            "chart": {
                "24h": selectors_dashboard.failures_timeline(hours=24, bucket_hours=1, user=user),
                "7d": selectors_dashboard.failures_timeline(hours=7 * 24, bucket_hours=6, user=user),
            },
            "groups": show_groups(Masker(user), selectors_dashboard.top_open_groups(user=user)),
            "jobs": [(job, selectors_dashboard.job_rate(job)) for job in jobs],
            "nav": "overview",
        },
    )
