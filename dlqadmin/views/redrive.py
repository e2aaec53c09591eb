"""The redrive dialog (plan -> options -> confirm) and redrive job pages (live progress, control)."""

from __future__ import annotations

from django.contrib import messages as flash
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dlqadmin import live, permissions, selectors_dashboard
from dlqadmin.forms import RedriveForm
from dlqadmin.models import ACTIVE_JOB_STATUSES, BrokerKind, RedriveAttemptStatus
from dlqadmin.selectors import DeadLetterFilter, FilterError, dead_letters_for, redrive_jobs_for
from dlqadmin.services.redrive.jobs import (
    RedriveError,
    redrive_job_cancel,
    redrive_job_create,
    redrive_job_pause,
    redrive_job_resume,
    redrive_plan,
)

from .common import (
    Selection,
    SelectionError,
    client_addr,
    filter_query,
    non_blank,
    page,
    requires,
    safe_next,
    selection_from,
)

SETTLED_STATUSES = ("redriven", "discarded", "resolved", "archived")


def _selection(request) -> Selection:
    """POST: ticked ids or select-all + filter; GET: the filter in the query string."""
    if request.method == "POST":
        return selection_from(request.POST)
    try:
        return Selection(filters=DeadLetterFilter.parse(non_blank(request.GET)))
    except FilterError as exc:
        raise SelectionError(exc.errors) from None


@require_http_methods(["GET", "POST"])
@requires(permissions.REDRIVE)
def redrive(request):
    """Show the plan for a selection; POST with ``confirm`` creates the job."""
    try:
        selection = _selection(request)
    except SelectionError as exc:
        return page(
            request, "dlqadmin/redrive.html", {"selection_errors": exc.errors, "nav": "messages"}, status=400
        )
    if selection.filters is not None and selection.filters.is_empty and request.method == "GET":
        return page(
            request,
            "dlqadmin/redrive.html",
            {
                "selection_errors": {
                    "filter": "choose messages first: a redrive needs a filter or a selection"
                }
            },
            status=400,
        )
    confirmed = request.method == "POST" and request.POST.get("confirm") == "1"
    override = bool(request.POST.get("override_loop_guard")) if confirmed else False
    plan = redrive_plan(
        actor=request.user, ids=selection.ids, filters=selection.filters, override_loop_guard=override
    )
    if plan.filter:  # carry the pinned filter (max_id) so the job is exactly the planned set
        selection = Selection(filters=DeadLetterFilter.parse(plan.filter))
    kinds = set(plan.kinds)
    form = RedriveForm(request.POST if confirmed else None, kinds=kinds)
    status = 200
    if confirmed and form.is_valid():
        data = form.cleaned_data
        try:
            job = redrive_job_create(
                actor=request.user,
                ids=selection.ids,
                filters=selection.filters,
                destination=data["destination"] or None,
                velocity=data.get("velocity"),
                batch_size=data["batch_size"],
                header_policy=data["header_policy"] or None,
                override_loop_guard=data.get("override_loop_guard", False),
                remote_addr=client_addr(request),
            )
        except RedriveError as exc:
            for field, message in exc.errors.items():
                form.add_error(field if field in form.fields else None, message)
            status = 409 if exc.conflict else 400
            if data["destination"]:  # show where the chosen override sends them
                plan = redrive_plan(
                    actor=request.user,
                    ids=selection.ids,
                    filters=selection.filters,
                    override_loop_guard=override,
                    destination=data["destination"],
                )
        else:
            flash.success(request, f"Redrive job #{job.pk} started for {job.total - job.skipped} message(s).")
            return redirect("dlq-job", pk=job.pk)
    elif confirmed:
        status = 400
    for destination in plan.destinations:
        destination["kind_label"] = (
            BrokerKind(destination["kind"]).label
            if destination["kind"] in BrokerKind.values
            else destination["kind"]
        )
    selected = (
        dead_letters_for(request.user).filter(pk__in=selection.ids)
        if selection.ids
        else dead_letters_for(request.user, selection.filters)
    )
    breakdown = selectors_dashboard.selection_status_counts(selected)
    settled = sum(n for s, n in breakdown.items() if s in SETTLED_STATUSES)
    return page(
        request,
        "dlqadmin/redrive.html",
        {
            "plan": plan,
            "form": form,
            "kinds": kinds,
            "selection": selection,
            "hidden": selection.hidden_fields(),
            "breakdown": sorted(breakdown.items(), key=lambda kv: -kv[1]),
            "settled": settled,
            "filter_query": filter_query(plan.filter) if plan.filter else "",
            "back": safe_next(request, request.META.get("HTTP_REFERER", "")),
            "nav": "messages",
        },
        status=status,
    )


# ------------------------------------------------------------------------------------------
# Jobs


@require_GET
@requires(permissions.VIEW)
def job_list(request):
    qs = redrive_jobs_for(request.user).select_related("created_by").order_by("-created_at", "-id")
    jobs_page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return page(request, "dlqadmin/jobs.html", {"page_obj": jobs_page, "nav": "jobs"})


@require_GET
@requires(permissions.VIEW)
def job_detail(request, pk: int):
    job = get_object_or_404(redrive_jobs_for(request.user).select_related("created_by"), pk=pk)
    problems = (
        job.attempts.filter(Q(status=RedriveAttemptStatus.FAILED) | Q(status=RedriveAttemptStatus.SKIPPED))
        .select_related("dead_letter")
        .order_by("-finished_at", "-id")[:200]
    )
    context = {
        "job": job,
        "rate": selectors_dashboard.job_rate(job),
        "progress": live.job_payload(job),
        "problems": problems,
        "active": job.status in ACTIVE_JOB_STATUSES,
        "filter_query": filter_query({k: v for k, v in (job.filter or {}).items() if k != "ids_count"}),
        "nav": "jobs",
    }
    if request.GET.get("part") == "problems":
        return page(request, "dlqadmin/_job_problems.html", context)
    return page(request, "dlqadmin/job.html", context)


@require_GET
@requires(permissions.VIEW)
def job_progress(request, pk: int):
    """The same payload the websocket sends, for the polling fallback."""
    job = get_object_or_404(redrive_jobs_for(request.user), pk=pk)
    rate = selectors_dashboard.job_rate(job)
    return JsonResponse(
        {
            "type": "job.progress",
            "job": live.job_payload(job),
            "rate": rate.per_second,
            "eta": rate.eta_seconds,
        }
    )


CONTROLS = {"cancel": redrive_job_cancel, "pause": redrive_job_pause, "resume": redrive_job_resume}


@require_POST
@requires(permissions.REDRIVE)
def job_control(request, pk: int, action: str):
    job = get_object_or_404(redrive_jobs_for(request.user), pk=pk)
    control = CONTROLS.get(action)
    if control is None:
        return HttpResponseBadRequest("unknown action")
    try:
        job = control(job=job, actor=request.user, remote_addr=client_addr(request))
    except RedriveError as exc:
        flash.error(request, "; ".join(exc.errors.values()))
    else:
        verb = {"cancel": "Cancelling", "pause": "Paused", "resume": "Resumed"}[action]
        flash.success(request, f"{verb} job #{job.pk}.")
    return redirect("dlq-job", pk=job.pk)
