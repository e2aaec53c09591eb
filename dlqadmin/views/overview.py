"""Overview: connection health, per-source backlog, failures over time, top groups, running jobs."""

from __future__ import annotations

from django.views.decorators.http import require_GET

from dlqadmin import permissions, selectors_dashboard

from .common import page, requires


@require_GET
@requires(permissions.VIEW)
def overview(request):
    jobs = selectors_dashboard.active_jobs()
    return page(
        request,
        "dlqadmin/overview.html",
        {
            "connections": selectors_dashboard.connections_overview(),
            "status_counts": selectors_dashboard.status_counts(),
            "chart": {
                "24h": selectors_dashboard.failures_timeline(hours=24, bucket_hours=1),
                "7d": selectors_dashboard.failures_timeline(hours=7 * 24, bucket_hours=6),
            },
            "groups": selectors_dashboard.top_open_groups(),
            "jobs": [(job, selectors_dashboard.job_rate(job)) for job in jobs],
            "nav": "overview",
        },
    )
