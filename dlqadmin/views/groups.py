"""Error groups: list with counts and sparklines, one group's page, lifecycle actions.

Only groups of sources the user may see (others are a 404); their error text is masked like the
messages' (``presenters.show_groups``)."""

from __future__ import annotations

from django.contrib import messages as flash
from django.core.paginator import Paginator
from django.http import QueryDict
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_POST

from dlqadmin import permissions, selectors_dashboard
from dlqadmin.forms import GroupStatusForm
from dlqadmin.models import ErrorGroup, ErrorGroupStatus
from dlqadmin.selectors import error_groups_for
from dlqadmin.services.dead_letters import EditError, error_group_set_status

from .common import client_addr, filter_query, is_htmx, masker_for, page, requires, url_for_pk
from .messages import results_context
from .presenters import show_groups

SPARK_DAYS = 14


def sparkline_points(values: list[int], width: int = 112, height: int = 24) -> str:
    """SVG polyline points for ``values`` (drawn server-side: no script, nothing to escape)."""
    if not values:
        return ""
    top = max(values) or 1
    step = width / max(len(values) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(values)
    )


#: the button that moves a group to a status (any other status: "Ignore")
STATUS_VERBS = {
    ErrorGroupStatus.OPEN: "Reopen",
    ErrorGroupStatus.ACKNOWLEDGED: "Acknowledge",
    ErrorGroupStatus.RESOLVED: "Resolve",
}


def status_actions(group: ErrorGroup) -> list[tuple[str, str]]:
    """(status, button text) for every status ``group`` can be moved to."""
    others = [value for value in ErrorGroupStatus.values if value != group.status]
    return [(value, STATUS_VERBS.get(value, "Ignore")) for value in others]


def _group_rows(request, groups: list[ErrorGroup]) -> list[ErrorGroup]:
    """What ``_group_row.html`` shows of each group: masked text, the sparkline and its links
    (each route resolved once for the whole table)."""
    show_groups(masker_for(request), groups)
    sparks = selectors_dashboard.group_sparklines([g.pk for g in groups], days=SPARK_DAYS)
    detail_url, status_url = url_for_pk("dlq-group"), url_for_pk("dlq-group-status")
    for group in groups:
        group.spark = sparks.get(group.pk, [])
        group.spark_points = sparkline_points(group.spark)
        group.spark_total = sum(group.spark)
        group.detail_url, group.status_url = detail_url(group.pk), status_url(group.pk)
        group.status_actions = status_actions(group)
    return groups


@require_GET
@requires(permissions.VIEW)
def group_list(request):
    status = request.GET.get("status", ErrorGroupStatus.OPEN)
    qs = error_groups_for(request.user).select_related("source").order_by("-last_seen", "-id")
    if status != "all":
        if status not in ErrorGroupStatus.values:
            status = ErrorGroupStatus.OPEN
        qs = qs.filter(status=status)
    paginator = Paginator(qs, 50)
    groups_page = paginator.get_page(request.GET.get("page"))
    groups = _group_rows(request, list(groups_page.object_list))
    return page(
        request,
        "dlqadmin/groups.html",
        {
            "groups": groups,
            "page_obj": groups_page,
            "status": status,
            "statuses": [*ErrorGroupStatus.choices, ("all", "All")],
            "spark_days": SPARK_DAYS,
            "nav": "groups",
        },
    )


@require_GET
@requires(permissions.VIEW)
def group_detail(request, pk: int):
    group = get_object_or_404(error_groups_for(request.user).select_related("source__connection"), pk=pk)
    show_groups(masker_for(request), [group])
    data = request.GET.copy()
    data.setlist("error_group", [str(group.pk)])
    context, status = results_context(request, data)
    if is_htmx(request) and request.headers.get("HX-Target") == "results":
        return page(request, "dlqadmin/_messages_results.html", context, status=status)
    spark = selectors_dashboard.group_sparklines([group.pk], days=SPARK_DAYS)[group.pk]
    redrive_filter = QueryDict(mutable=True)
    redrive_filter.setlist("error_group", [str(group.pk)])
    redrive_filter.setlist("status", list(selectors_dashboard.REDRIVABLE_STATUSES))
    counts = selectors_dashboard.group_status_counts(group)
    context.update(
        group=group,
        spark=spark,
        spark_points=sparkline_points(spark, width=280, height=48),
        spark_days=SPARK_DAYS,
        counts=counts,
        redrivable=sum(counts[s] for s in selectors_dashboard.REDRIVABLE_STATUSES),
        redrive_query=redrive_filter.urlencode(),
        status_actions=status_actions(group),
        messages_query=filter_query({"error_group": [group.pk]}),
        nav="groups",
    )
    return page(request, "dlqadmin/group.html", context, status=status)


@require_POST
@requires(permissions.MANAGE_GROUPS)
def group_status(request, pk: int):
    group = get_object_or_404(error_groups_for(request.user), pk=pk)
    form = GroupStatusForm(request.POST)
    if not form.is_valid():
        flash.error(request, "Unknown status.")
        return redirect(*_redirect_target(request, group))
    try:
        group = error_group_set_status(
            actor=request.user,
            group=group,
            status=form.cleaned_data["status"],
            remote_addr=client_addr(request),
        )
    except EditError as exc:
        flash.error(request, "; ".join(exc.errors.values()))
    if is_htmx(request):
        _group_rows(request, [group])
        return page(
            request,
            "dlqadmin/_group_row.html",
            {"group": group, "just_changed": True},
        )
    flash.success(request, f"Error group #{group.pk} is now {group.get_status_display().lower()}.")
    return redirect(*_redirect_target(request, group))


def _redirect_target(request, group) -> tuple:
    if request.POST.get("next") == "list":
        return ("dlq-groups",)
    return ("dlq-group", group.pk)
