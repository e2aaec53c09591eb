"""Redrive jobs: plan, create, process in chunks, pause / resume / cancel.

Life of a job:

1. ``redrive_plan`` resolves ids or a filter to counts the operator confirms (how many, how many
   parked by the loop guard, how many busy in another job, where they go). The plan pins the
   filter to ``max_id`` so messages arriving after the plan are never part of the job.
2. ``redrive_job_create`` claims the planned messages (conditional UPDATE: a message in an
   active job is not claimed twice) and writes one RedriveAttempt per message, in chunks, so
   memory stays flat in the job size. The Celery task is enqueued on commit.
3. ``redrive_worker.redrive_job_step`` processes it chunk by chunk (see that module).

With an ``actor`` (a user), plan and job only ever include messages of sources that user may see
(``dlqadmin.selectors.dead_letters_for``): other ids are ignored, filters never reach them.
``actor=None`` is the system (CLI, automatic policy): every message.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone

from dlqadmin import live, permissions
from dlqadmin.models import (
    ACTIVE_JOB_STATUSES,
    DeadLetter,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveAttemptStatus,
    RedriveJob,
    RedriveJobStatus,
)
from dlqadmin.selectors import DeadLetterFilter, dead_letters_for
from dlqadmin.services.audit import audit_record
from dlqadmin.services.redrive_worker import CLAIM_CHUNK, enqueue, finish

log = logging.getLogger(__name__)

MAX_VELOCITY = 100_000
MAX_BATCH = 1000
#: messages per chunk unless the caller says otherwise: a chunk is the unit of pause / cancel and of
#: one publish window; 500 measured 1.2-1.7x the throughput of 100 (docs/benchmarks.md)
DEFAULT_BATCH = 500
DESTINATION_KEYS = {"exchange", "routing_key", "use_original_route", "topic", "partition", "subject"}
POLICY_KEYS = {"copy_original", "strip", "keep_diagnostics", "extra", "spring_retry_count"}


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
    total: int
    redrivable: int
    parked: int
    busy: int
    destinations: list[dict] = field(default_factory=list)
    filter: dict = field(default_factory=dict)
    ids: list[int] | None = None


def _selection(*, actor, ids: list[int] | None, filters: DeadLetterFilter | None):
    """The messages ``actor`` selected: of the given ids or filter, only those they may see."""
    if ids is not None:
        return dead_letters_for(actor).filter(pk__in=ids)
    if filters is None:
        raise RedriveError({"filter": "give ids or a filter"})
    return dead_letters_for(actor, filters)


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
) -> RedrivePlan:
    """Exactly what a job created by ``actor`` from the same input would touch. Read-only."""
    if ids is not None:
        ids = _validate_ids(ids)
    elif filters is not None and filters.max_id is None:
        top = DeadLetter.objects.aggregate(top=Max("id"))["top"] or 0
        filters = DeadLetterFilter(**{**filters.__dict__, "max_id": top})
    qs = _selection(actor=actor, ids=ids, filters=filters).order_by()
    total = qs.count()
    busy = qs.filter(status=DeadLetterStatus.QUEUED).count()
    parked = (
        0 if override_loop_guard else qs.exclude(status=DeadLetterStatus.QUEUED).filter(_parked_q()).count()
    )
    destinations = list(
        qs.values(
            "source__connection__kind", "source__name", "origin_queue", "origin_topic", "origin_subject"
        )
        .annotate(count=Count("id"))
        .order_by("-count")[:10]
    )
    return RedrivePlan(
        total=total,
        redrivable=total - busy - parked,
        parked=parked,
        busy=busy,
        destinations=[
            {
                "kind": d["source__connection__kind"],
                "source": d["source__name"],
                "destination": d["origin_queue"]
                or d["origin_topic"]
                or d["origin_subject"]
                or "(none recorded)",
                "count": d["count"],
            }
            for d in destinations
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
    return clean


def _validate_options(*, destination, velocity, batch_size, header_policy) -> None:
    errors = {}
    if destination and (not isinstance(destination, dict) or set(destination) - DESTINATION_KEYS):
        errors["destination"] = f"destination takes only: {', '.join(sorted(DESTINATION_KEYS))}"
    if velocity is not None and not (isinstance(velocity, int | float) and 0 < velocity <= MAX_VELOCITY):
        errors["velocity"] = f"velocity must be a number of messages per second in (0, {MAX_VELOCITY}]"
    if not (isinstance(batch_size, int) and 1 <= batch_size <= MAX_BATCH):
        errors["batch_size"] = f"batch_size must be an integer from 1 to {MAX_BATCH}"
    if header_policy and (not isinstance(header_policy, dict) or set(header_policy) - POLICY_KEYS):
        errors["header_policy"] = f"header_policy takes only: {', '.join(sorted(POLICY_KEYS))}"
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
    nothing selected, which includes ids only of sources ``actor`` may not see; ``conflict=True``
    when every selected message is already in an active job), PermissionDenied."""
    permissions.require(actor, permissions.REDRIVE)
    _validate_options(
        destination=destination, velocity=velocity, batch_size=batch_size, header_policy=header_policy
    )
    plan = redrive_plan(actor=actor, ids=ids, filters=filters, override_loop_guard=override_loop_guard)
    if plan.total == 0:
        hint = " (no message with those ids that you may see)" if ids is not None else ""
        raise RedriveError({"selection": f"nothing matches: no message to redrive{hint}"})
    if plan.busy == plan.total:
        raise RedriveError(
            {"selection": "every selected message is already in an active redrive job"}, conflict=True
        )
    pinned = DeadLetterFilter.parse(plan.filter) if plan.filter else None
    with transaction.atomic():
        job = RedriveJob.objects.create(
            created_by=actor if getattr(actor, "pk", None) else None,
            filter=plan.filter if ids is None else {"ids_count": len(plan.ids or [])},
            destination=destination or {},
            header_policy=header_policy or {},
            velocity=velocity,
            batch_size=batch_size,
            override_loop_guard=override_loop_guard,
        )
        selection = _selection(actor=actor, ids=plan.ids, filters=pinned)
        claimed, skipped = _claim_messages(job, selection, override_loop_guard)
        RedriveJob.objects.filter(pk=job.pk).update(total=claimed + skipped, skipped=skipped)
        audit_record(
            actor=actor,
            action="redrive.create",
            target=job,
            count=claimed,
            detail={
                "filter": plan.filter,
                "ids": (plan.ids or [])[:100],
                "destination": destination or {},
                "velocity": velocity,
                "skipped": skipped,
            },
            remote_addr=remote_addr,
        )
        if claimed == 0:
            finish(job, RedriveJobStatus.COMPLETED)
        else:
            transaction.on_commit(lambda: enqueue(job.pk))
    job.refresh_from_db()
    live.job_progress(job)
    return job


def _claim_messages(job: RedriveJob, selection, override_loop_guard: bool) -> tuple[int, int]:
    """Claim the selection for ``job`` in chunks; returns (claimed, skipped)."""
    claimed = skipped = 0
    ids = selection.order_by("id").values_list("id", flat=True)
    chunk: list[int] = []
    for pk in ids.iterator(chunk_size=CLAIM_CHUNK):
        chunk.append(pk)
        if len(chunk) == CLAIM_CHUNK:
            c, s = _claim_chunk(job, chunk, override_loop_guard)
            claimed, skipped, chunk = claimed + c, skipped + s, []
    if chunk:
        c, s = _claim_chunk(job, chunk, override_loop_guard)
        claimed, skipped = claimed + c, skipped + s
    return claimed, skipped


def _claim_chunk(job: RedriveJob, ids: list[int], override_loop_guard: bool) -> tuple[int, int]:
    """Lock the chunk's messages (those not in another active job), mark them QUEUED and write
    their attempts; loop-guarded ones get a SKIPPED attempt instead. Reads only the columns it
    needs (not the payloads)."""
    rows = (
        DeadLetter.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk__in=ids)
        .exclude(status=DeadLetterStatus.QUEUED)
        .values_list("pk", "status", "retry_count", "source__max_redrives")
    )
    attempts, claim_ids, now = [], [], timezone.now()
    for pk, status, retry_count, max_redrives in rows:
        parked = status == DeadLetterStatus.PARKED or (max_redrives and retry_count >= max_redrives)
        if parked and not override_loop_guard:
            error = (
                f"loop guard: redriven {retry_count} time(s), limit {max_redrives}; override to redrive again"
            )
            attempts.append((pk, RedriveAttemptStatus.SKIPPED, status, error, now))
            continue
        claim_ids.append(pk)
        attempts.append((pk, RedriveAttemptStatus.PENDING, status, "", None))
    claimed = DeadLetter.objects.filter(pk__in=claim_ids).update(status=DeadLetterStatus.QUEUED)
    _insert_attempts(job, attempts)
    return claimed, len(attempts) - len(claim_ids)


def _insert_attempts(job: RedriveJob, attempts: list[tuple]) -> None:
    """Write (dead letter id, status, previous status, error, finished_at) attempts of ``job``:
    on PostgreSQL one INSERT of unnested arrays (``bulk_create`` compiles a dozen placeholders
    per row), elsewhere ``bulk_create``."""
    if not attempts:
        return
    if db_connection.vendor != "postgresql":
        RedriveAttempt.objects.bulk_create(
            [
                RedriveAttempt(
                    job=job,
                    dead_letter_id=letter,
                    status=status,
                    previous_status=previous,
                    error=error,
                    finished_at=finished,
                )
                for letter, status, previous, error, finished in attempts
            ],
            batch_size=CLAIM_CHUNK,
        )
        return
    meta = RedriveAttempt._meta
    quote = db_connection.ops.quote_name
    col = {name: quote(meta.get_field(name).column) for name in _INSERTED}
    letters, statuses, previous, errors, finished = (list(c) for c in zip(*attempts, strict=True))
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(col.values())}) "  # noqa: S608 - quoted identifiers only
        "SELECT %s, v.letter, v.status, v.redrive_id, v.previous, 0, v.error, '', '', v.finished "
        "FROM unnest(%s::bigint[], %s::text[], %s::uuid[], %s::text[], %s::text[], %s::timestamptz[]) "
        "AS v(letter, status, redrive_id, previous, error, finished)"
    )
    redrive_ids = [uuid.uuid4() for _ in attempts]
    with db_connection.cursor() as cursor:
        cursor.execute(sql, [job.pk, letters, statuses, redrive_ids, previous, errors, finished])


_INSERTED = (
    "job",
    "dead_letter",
    "status",
    "redrive_id",
    "previous_status",
    "tries",
    "error",
    "destination",
    "broker_position",
    "finished_at",
)


# ------------------------------------------------------------------------------------------
# Control


def redrive_job_cancel(*, job: RedriveJob, actor=None, remote_addr: str | None = None) -> RedriveJob:
    """Stop a job: no new chunk starts; the chunk in flight finishes. Raises RedriveError if done."""
    permissions.require(actor, permissions.REDRIVE)
    changed = RedriveJob.objects.filter(pk=job.pk, status__in=ACTIVE_JOB_STATUSES).update(
        status=RedriveJobStatus.CANCELLING
    )
    if not changed:
        raise RedriveError(
            {"status": f"job is {job.status}; only an active job can be cancelled"}, conflict=True
        )
    audit_record(actor=actor, action="redrive.cancel", target=job, remote_addr=remote_addr)
    transaction.on_commit(lambda: enqueue(job.pk))
    job.refresh_from_db()
    return job


def redrive_job_pause(*, job: RedriveJob, actor=None, remote_addr: str | None = None) -> RedriveJob:
    permissions.require(actor, permissions.REDRIVE)
    changed = RedriveJob.objects.filter(
        pk=job.pk, status__in=[RedriveJobStatus.PENDING, RedriveJobStatus.RUNNING]
    ).update(status=RedriveJobStatus.PAUSED)
    if not changed:
        raise RedriveError(
            {"status": f"job is {job.status}; only a pending or running job can be paused"}, conflict=True
        )
    audit_record(actor=actor, action="redrive.pause", target=job, remote_addr=remote_addr)
    job.refresh_from_db()
    live.job_progress(job)
    return job


def redrive_job_resume(*, job: RedriveJob, actor=None, remote_addr: str | None = None) -> RedriveJob:
    permissions.require(actor, permissions.REDRIVE)
    changed = RedriveJob.objects.filter(pk=job.pk, status=RedriveJobStatus.PAUSED).update(
        status=RedriveJobStatus.RUNNING
    )
    if not changed:
        raise RedriveError(
            {"status": f"job is {job.status}; only a paused job can be resumed"}, conflict=True
        )
    audit_record(actor=actor, action="redrive.resume", target=job, remote_addr=remote_addr)
    transaction.on_commit(lambda: enqueue(job.pk))
    job.refresh_from_db()
    live.job_progress(job)
    return job
