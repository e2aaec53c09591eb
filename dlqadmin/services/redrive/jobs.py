"""Redrive jobs: plan, create, process in chunks, pause / resume / cancel.

Life of a job:

1. ``redrive_plan`` resolves ids or a filter to counts the operator confirms (how many, how many
   parked by the loop guard, how many busy in another job, where they go and how many need a
   destination because no origin is recorded: :mod:`dlqadmin.services.redrive.destination`).
   The plan pins the filter to ``max_id`` so messages arriving after the plan are never part of
   the job.
2. ``redrive_job_create`` claims the planned messages and writes one RedriveAttempt per message,
   in chunks, so memory stays flat in the job size (:mod:`dlqadmin.services.redrive.claim`). A
   message belongs to at most one active job (a unique index arbitrates every interleaving of
   two creations or claims): one held by another job gets a SKIPPED attempt "busy in job #N";
   when every selected message is busy the creation answers a conflict and creates nothing.
   Messages that need a destination get a SKIPPED attempt saying so, like loop-guarded ones. A
   large filter
   is claimed only in part by the request; the worker claims the rest ahead of sending. The
   Celery task is enqueued on commit.
3. ``worker.redrive_job_step`` processes it chunk by chunk (see that module).

With an ``actor`` (a user), plan and job only ever include messages of sources that user may see
(``dlqadmin.selectors.dead_letters_for``): other ids are ignored, filters never reach them.
``actor=None`` is the system (CLI, automatic policy): every message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Case, CharField, Count, Exists, F, Max, OuterRef, Q, Value, When

from dlqadmin import live, permissions
from dlqadmin.models import (
    ACTIVE_JOB_STATUSES,
    RUNNABLE_JOB_STATUSES,
    DeadLetter,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveJob,
    RedriveJobStatus,
)
from dlqadmin.selectors import DeadLetterFilter
from dlqadmin.services.audit import audit_record
from dlqadmin.services.dead_letters import selection_for
from dlqadmin.services.redrive import claim as redrive_claim
from dlqadmin.services.redrive import destination as routes
from dlqadmin.services.redrive import options as redrive_options
from dlqadmin.services.redrive.options import DEFAULT_BATCH
from dlqadmin.services.redrive.worker import enqueue, finish

log = logging.getLogger("dlqadmin.services.redrive")  # the pre-package name, kept for logging configs


class RedriveError(ValueError):
    """Bad redrive request (HTTP 400 / form error); ``errors`` maps field -> message."""

    def __init__(self, errors: dict[str, str], *, conflict: bool = False):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors
        self.conflict = conflict


# ------------------------------------------------------------------------------------------
# Plan


@dataclass
class RedrivePlan:
    """What a job would do. ``redrivable`` messages are sent; ``needs_destination`` ones have no
    recorded origin and no override (a job skips them); ``routes`` counts the messages a job
    considers (neither busy nor parked) by route (:mod:`dlqadmin.services.redrive.destination`);
    ``destinations`` are the ten largest (kind, source, route, where) groups of those."""

    total: int
    redrivable: int
    parked: int
    busy: int
    needs_destination: int = 0
    routes: dict[str, int] = field(default_factory=dict)
    destinations: list[dict] = field(default_factory=list)
    filter: dict = field(default_factory=dict)
    ids: list[int] | None = None

    #: broker kinds of the messages that need a destination
    needs_kinds: list[str] = field(default_factory=list)
    #: broker kinds of every selected message (which override fields apply)
    kinds: list[str] = field(default_factory=list)
    #: the destination override the plan was made for (empty: the original destinations)
    destination: dict = field(default_factory=dict)

    def needs_destination_message(self) -> str:
        """The 400 answer / form error when messages need a destination (which kinds, why)."""
        why = "; ".join(
            routes.needs_reason(kind).removeprefix("needs a destination: ") for kind in self.needs_kinds
        )
        count = self.needs_destination
        return f"{count} selected message(s) need a destination ({why}): give a destination override"


def _selection(*, actor, ids: list[int] | None, filters: DeadLetterFilter | None):
    try:
        return selection_for(actor=actor, ids=ids, filters=filters)
    except ValueError as exc:
        raise RedriveError({"filter": str(exc)}) from exc


def _parked_q() -> Q:
    return Q(status=DeadLetterStatus.PARKED) | Q(
        retry_count__gte=F("source__max_redrives"), source__max_redrives__gt=0
    )


def redrive_plan(
    *,
    actor=None,
    ids: list[int] | None = None,
    filters: DeadLetterFilter | None = None,
    override_loop_guard: bool = False,
    destination: dict | None = None,
) -> RedrivePlan:
    """Exactly what a job created by ``actor`` from the same input (and the same ``destination``
    override) would touch, and where each message would go. Read-only."""
    if ids is not None:
        ids = _validate_ids(ids)
    elif filters is not None and filters.max_id is None:
        top = DeadLetter.objects.aggregate(top=Max("id"))["top"] or 0
        filters = DeadLetterFilter(**{**filters.__dict__, "max_id": top})
    _validate_options(destination=destination)
    qs = _selection(actor=actor, ids=ids, filters=filters).order_by()
    busy = Q(
        Exists(
            RedriveAttempt.objects.filter(
                dead_letter=OuterRef("pk"), holds=True, job__status__in=ACTIVE_JOB_STATUSES
            )
        )
    )
    held = busy if override_loop_guard else busy | _parked_q()
    # one pass over the selection: (kind, busy / parked / considered, route) -> count
    state_of = Case(
        When(busy, then=Value("busy")),
        When(held, then=Value("parked")),
        default=Value("considered"),
        output_field=CharField(),
    )
    counts: dict[tuple[str, str, str], int] = {
        (kind, st, route): n
        for kind, st, route, n in routes.annotate_routes(qs, destination)
        .annotate(state=state_of)
        .values_list(routes.KIND, "state", "route")
        .annotate(n=Count("id"))
    }

    def total(*, state: str | None = None, route: str | None = None) -> int:
        return sum(n for (_, st, r), n in counts.items() if state in (None, st) and route in (None, r))

    needs = total(state="considered", route=routes.NEEDS_DESTINATION)
    groups = (
        routes.annotate_routes(qs.exclude(held), destination)
        .values("source__connection__kind", "source__name", "route", "route_to")
        .annotate(count=Count("id"))
        .order_by("-count", "source__name", "route_to")[:10]
    )
    return RedrivePlan(
        total=total(),
        redrivable=total(state="considered") - needs,
        parked=total(state="parked"),
        busy=total(state="busy"),
        needs_destination=needs,
        routes={route: total(state="considered", route=route) for route in routes.ROUTES},
        needs_kinds=sorted(
            {k for k, st, r in counts if st == "considered" and r == routes.NEEDS_DESTINATION}
        ),
        kinds=sorted({kind for kind, _, _ in counts}),
        destination=dict(destination or {}),
        destinations=[
            {
                "kind": g["source__connection__kind"],
                "source": g["source__name"],
                "route": g["route"],
                "destination": g["route_to"] or routes.ROUTE_LABELS[g["route"]],
                "reason": (
                    routes.needs_reason(g["source__connection__kind"])
                    if g["route"] == routes.NEEDS_DESTINATION
                    else ""
                ),
                "count": g["count"],
            }
            for g in groups
        ],
        filter=filters.to_dict() if filters is not None and ids is None else {},
        ids=ids,
    )


# ------------------------------------------------------------------------------------------
# Create


def _validate_ids(ids) -> list[int]:
    try:
        clean = [int(i) for i in ids]
    except (TypeError, ValueError):
        raise RedriveError({"ids": "ids must be a list of integers"}) from None
    if not clean:
        raise RedriveError({"ids": "ids is empty"})
    too_many = redrive_options.ids_problem(len(clean))
    if too_many:
        raise RedriveError({"ids": too_many})
    return clean


def _validate_options(
    *, destination, velocity=None, batch_size: int = DEFAULT_BATCH, header_policy=None
) -> None:
    """The bounds of :mod:`dlqadmin.services.redrive.options`, for callers that skipped a surface."""
    errors = redrive_options.option_problems(
        destination=destination, velocity=velocity, batch_size=batch_size, header_policy=header_policy
    )
    if errors:
        raise RedriveError(errors)


def redrive_job_create(
    *,
    actor=None,
    ids: list[int] | None = None,
    filters: DeadLetterFilter | None = None,
    destination: dict | None = None,
    velocity: float | None = None,
    batch_size: int = DEFAULT_BATCH,
    header_policy: dict | None = None,
    override_loop_guard: bool = False,
    remote_addr: str | None = None,
) -> RedriveJob:
    """Create a job over exactly the planned set and enqueue it. Raises RedriveError (bad input;
    nothing selected, which includes ids only of sources ``actor`` may not see; nothing left to
    send but messages that need a destination; ``conflict=True`` when every selected message is
    already in an active job, then nothing is created), PermissionDenied. Messages held by
    another active job are skipped ("busy in job #N"), and so are messages that need a
    destination among others, with that reason."""
    permissions.require(actor, permissions.REDRIVE)
    _validate_options(
        destination=destination, velocity=velocity, batch_size=batch_size, header_policy=header_policy
    )
    plan = redrive_plan(
        actor=actor,
        ids=ids,
        filters=filters,
        override_loop_guard=override_loop_guard,
        destination=destination,
    )
    if plan.total == 0:
        hint = " (no message with those ids that you may see)" if ids is not None else ""
        raise RedriveError({"selection": f"nothing matches: no message to redrive{hint}"})
    if plan.busy == plan.total:
        raise _all_busy(_selection(actor=actor, ids=plan.ids, filters=filters))
    if plan.needs_destination and plan.redrivable == 0:
        raise RedriveError({"destination": plan.needs_destination_message()})
    pinned = DeadLetterFilter.parse(plan.filter) if plan.filter else None
    with transaction.atomic():
        job = RedriveJob.objects.create(
            created_by=actor if getattr(actor, "pk", None) else None,
            claim_actor_id=getattr(actor, "pk", None),
            filter=plan.filter if ids is None else {"ids_count": len(plan.ids or [])},
            destination=destination or {},
            header_policy=header_policy or {},
            velocity=velocity,
            batch_size=batch_size,
            override_loop_guard=override_loop_guard,
        )
        selection = _selection(actor=actor, ids=plan.ids, filters=pinned)
        limit = None if ids is not None else redrive_claim.claim_in_request_limit()
        done, cursor = redrive_claim.claim_selection(job, selection, limit=limit)
        claimed, skipped = done.claimed, done.skipped
        if cursor is None and claimed == 0 and done.busy and done.busy == skipped:
            # every message was taken by another job since the plan: roll the job back
            raise _all_busy(selection, holders=done.holders)
        # while the worker claims the rest, the total is the plan's estimate (exact once claimed)
        total = claimed + skipped if cursor is None else max(claimed + skipped, plan.total)
        RedriveJob.objects.filter(pk=job.pk).update(total=total, skipped=skipped, claim_cursor=cursor)
        audit_record(
            actor=actor,
            action="redrive.create",
            target=job,
            count=total - skipped,
            detail={
                "filter": plan.filter,
                "ids": (plan.ids or [])[:100],
                "destination": destination or {},
                "velocity": velocity,
                "skipped": skipped,
                "busy": done.busy,
                "claimed_by_worker": cursor is not None,
            },
            remote_addr=remote_addr,
        )
        if claimed == 0 and cursor is None:
            finish(job, RedriveJobStatus.COMPLETED)
        else:
            transaction.on_commit(lambda: enqueue(job.pk))
    job.refresh_from_db()
    live.job_progress(job)
    return job


def _all_busy(selection, holders: set[int] | None = None) -> RedriveError:
    if holders is None:
        holders = set(
            RedriveAttempt.objects.filter(dead_letter__in=selection.order_by().values("pk"), holds=True)
            .values_list("job_id", flat=True)
            .distinct()[:10]
        )
    which = ", ".join(f"#{pk}" for pk in sorted(holders)[:10])
    return RedriveError(
        {"selection": f"every selected message is already in an active redrive job ({which})"},
        conflict=True,
    )


# ------------------------------------------------------------------------------------------
# Control


# verb -> (statuses it may leave, status it goes to, who may, wake the worker, publish live)
_TRANSITIONS = {
    "cancel": (ACTIVE_JOB_STATUSES, RedriveJobStatus.CANCELLING, "an active job", True, False),
    "pause": (RUNNABLE_JOB_STATUSES, RedriveJobStatus.PAUSED, "a pending or running job", False, True),
    "resume": ([RedriveJobStatus.PAUSED], RedriveJobStatus.RUNNING, "a paused job", True, True),
}
_PAST = {"cancel": "cancelled", "pause": "paused", "resume": "resumed"}


def _transition(verb: str, job: RedriveJob, actor, remote_addr: str | None) -> RedriveJob:
    """Move `job` by `verb` only if its status allows it (one conditional UPDATE), audit it as
    redrive.<verb>, then wake the worker after commit and/or publish live progress as the verb
    needs. Raises RedriveError (conflict) when the job's status does not allow it."""
    allowed, to, who, wake, publish = _TRANSITIONS[verb]
    permissions.require(actor, permissions.REDRIVE)
    changed = RedriveJob.objects.filter(pk=job.pk, status__in=allowed).update(status=to)
    if not changed:
        raise RedriveError({"status": f"job is {job.status}; only {who} can be {_PAST[verb]}"}, conflict=True)
    audit_record(actor=actor, action=f"redrive.{verb}", target=job, remote_addr=remote_addr)
    if wake:
        transaction.on_commit(lambda: enqueue(job.pk))
    job.refresh_from_db()
    if publish:
        live.job_progress(job)
    return job


def redrive_job_cancel(*, job: RedriveJob, actor=None, remote_addr: str | None = None) -> RedriveJob:
    """Stop a job: no new chunk starts; the chunk in flight finishes. Raises RedriveError if done."""
    return _transition("cancel", job, actor, remote_addr)


def redrive_job_pause(*, job: RedriveJob, actor=None, remote_addr: str | None = None) -> RedriveJob:
    return _transition("pause", job, actor, remote_addr)


def redrive_job_resume(*, job: RedriveJob, actor=None, remote_addr: str | None = None) -> RedriveJob:
    return _transition("resume", job, actor, remote_addr)
