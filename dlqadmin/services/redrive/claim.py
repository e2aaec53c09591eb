"""Claiming a redrive job's messages: each selected dead letter no other active job holds
becomes QUEUED and gets one RedriveAttempt of the job that holds it (a SKIPPED one when the loop
guard parks it, when it needs a destination the job does not give, or when another job holds
it: "busy in job #N"). Holding is exclusive by a
unique index (:mod:`dlqadmin.services.redrive.lease`).

A job over ids (at most ``options.MAX_SELECTION_IDS``, on every surface) is claimed
whole by the request that creates it. A job
over a filter may match a million messages, which would hold the request, and one transaction
locking every row, for minutes: the request claims the first
``DLQADMIN_REDRIVE_CLAIM_IN_REQUEST`` messages and leaves a cursor (``RedriveJob.claim_cursor``,
the last dead-letter id considered); the worker claims the rest, :data:`CLAIM_CHUNK` at a time
(one transaction each), ahead of sending, so sending starts at once. Messages are claimed in id
order, the filter is the one pinned at planning (``max_id``: nothing newer joins) and the actor is
the job's creator (``claim_actor_id``), so the job touches exactly what its creator could select.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from dlqadmin.models import (
    ACTIVE_JOB_STATUSES,
    RUNNABLE_JOB_STATUSES,
    DeadLetter,
    DeadLetterState,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveAttemptStatus,
    RedriveJob,
)
from dlqadmin.selectors import DeadLetterFilter
from dlqadmin.services.dead_letters import selection_for
from dlqadmin.services.redrive import destination as routes

log = logging.getLogger("dlqadmin.services.redrive_claim")  # the pre-package name, kept for logging configs

#: dead letters claimed per transaction
CLAIM_CHUNK = 1000


@dataclass
class Claimed:
    """What a claim did: messages claimed (now held and QUEUED), attempts skipped (loop guard or
    busy), of which ``busy`` were held by other jobs (``holders``: their ids)."""

    claimed: int = 0
    skipped: int = 0
    busy: int = 0
    holders: set[int] = field(default_factory=set)

    def __add__(self, other: Claimed) -> Claimed:
        return Claimed(
            self.claimed + other.claimed,
            self.skipped + other.skipped,
            self.busy + other.busy,
            self.holders | other.holders,
        )


def claim_selection(job: RedriveJob, selection, *, limit: int | None = None) -> tuple[Claimed, int | None]:
    """Claim ``selection`` for ``job`` in id order, :data:`CLAIM_CHUNK` per statement, at most
    ``limit`` ids (None: all). Returns (what was claimed, cursor): ``cursor`` is the last id
    considered when the limit stopped the claim before the end, else None."""
    total, considered = Claimed(), 0
    cursor: int | None = 0
    while True:
        count = CLAIM_CHUNK if limit is None else min(CLAIM_CHUNK, limit - considered)
        done, cursor = _claim_after(job, selection, cursor, count)
        total, considered = total + done, considered + count
        if cursor is None:
            return total, None
        if limit is not None and considered >= limit:
            more = selection.filter(pk__gt=cursor).exists()
            return total, cursor if more else None


def _claim_after(job: RedriveJob, selection, cursor: int, count: int) -> tuple[Claimed, int | None]:
    """Claim the first ``count`` messages of ``selection`` with an id above ``cursor``. Returns
    (what was claimed, the last id taken), the id None when fewer than ``count`` were left."""
    ids = list(selection.filter(pk__gt=cursor).order_by("id").values_list("id", flat=True)[:count])
    done = claim_chunk(job, ids) if ids else Claimed()
    return done, ids[-1] if len(ids) == count else None


def claim_chunk(job: RedriveJob, ids: list[int]) -> Claimed:
    """Take the chunk's messages for ``job``: each one no other active job holds gets a pending
    attempt that holds it (INSERT ... ON CONFLICT DO NOTHING against the one-holder-per-message
    index: of two jobs claiming the same message, whatever the interleaving, exactly one wins;
    the other waits for the winner's commit and then sees the conflict) and becomes QUEUED.
    A message held by another job gets a SKIPPED attempt "busy in job #N"; a loop-guarded one a
    SKIPPED attempt saying so, and so does one that needs a destination the job does not give.
    Reads only the columns it needs (not the payloads)."""
    rows = (
        DeadLetter.objects.filter(pk__any=ids)
        .annotate(needs=routes.needs_destination(job.destination))
        .values_list("pk", "status", "retry_count", "source__max_redrives", "needs", routes.KIND)
    )
    skipped, wanted, now = [], [], timezone.now()
    for pk, status, retry_count, max_redrives, needs, kind in rows:
        parked = status == DeadLetterStatus.PARKED or (max_redrives and retry_count >= max_redrives)
        if parked and not job.override_loop_guard:
            error = (
                f"loop guard: redriven {retry_count} time(s), limit {max_redrives}; override to redrive again"
            )
            skipped.append((pk, RedriveAttemptStatus.SKIPPED, status, error, now))
            continue
        if needs:  # no origin recorded, no override: never sent to fail at the broker
            skipped.append((pk, RedriveAttemptStatus.SKIPPED, status, routes.needs_reason(kind), now))
            continue
        # QUEUED with no holder: left over by a job that is gone; it was new before that
        previous = DeadLetterStatus.NEW if status == DeadLetterStatus.QUEUED else status
        wanted.append((pk, RedriveAttemptStatus.PENDING, previous, "", None))
    won = _insert_attempts(job, wanted, hold=True)
    lost = [row for row in wanted if row[0] not in won]
    holders = _holders([row[0] for row in lost])
    if lost and _release_finished_holders(holders):  # a hold that outlived its job: take it
        won |= _insert_attempts(job, lost, hold=True)
        lost = [row for row in lost if row[0] not in won]
        holders = _holders([row[0] for row in lost])
    if lost:
        for pk, _, previous, _, _ in lost:
            holder = holders.get(pk)
            reason = f"busy in job #{holder}" if holder else "busy in another redrive job"
            skipped.append((pk, RedriveAttemptStatus.SKIPPED, previous, reason, now))
    queued = DeadLetterState.objects.filter(pk__any=list(won))
    claimed = queued.update(status=DeadLetterStatus.QUEUED) if won else 0
    _insert_attempts(job, skipped)
    return Claimed(claimed, len(skipped), len(lost), set(holders.values()))


def _holders(letters: list[int]) -> dict[int, int]:
    """dead letter id -> id of the job holding it."""
    if not letters:
        return {}
    held = RedriveAttempt.objects.filter(dead_letter_id__in=letters, holds=True)
    return dict(held.values_list("dead_letter_id", "job_id"))


def _release_finished_holders(holders: dict[int, int]) -> bool:
    """Drop holds whose job has ended (a job always releases them as it ends; this covers a job
    ended by other means, e.g. by hand in the database). Returns whether any was dropped."""
    ended = set(
        RedriveJob.objects.filter(pk__in=set(holders.values()))
        .exclude(status__in=ACTIVE_JOB_STATUSES)
        .values_list("pk", flat=True)
    )
    if not ended:
        return False
    letters = [letter for letter, job_id in holders.items() if job_id in ended]
    RedriveAttempt.objects.filter(dead_letter_id__in=letters, job_id__in=ended, holds=True).update(
        holds=False
    )
    log.warning("released %d hold(s) of ended redrive job(s) %s", len(letters), sorted(ended))
    return True


def claim_in_request_limit() -> int:
    return max(1, settings.DLQADMIN_REDRIVE_CLAIM_IN_REQUEST)


def claim_next(job: RedriveJob) -> bool:
    """Claim the next :data:`CLAIM_CHUNK` messages of a job still being claimed (one
    transaction, the job row locked so concurrent workers take turns). Returns whether messages
    are left to claim; False once the job is fully claimed, paused, stopping or finished. On the
    last chunk ``total`` becomes the exact number of attempts."""
    with transaction.atomic():
        locked = (
            RedriveJob.objects.select_for_update(skip_locked=True)
            .filter(pk=job.pk, claim_cursor__isnull=False)
            .values_list("claim_cursor", "status", "filter", "claim_actor_id")
            .first()
        )
        if locked is None:  # claimed to the end, or another worker is claiming this very moment
            return RedriveJob.objects.filter(pk=job.pk, claim_cursor__isnull=False).exists()
        cursor, status, pinned, actor_id = locked
        if status not in RUNNABLE_JOB_STATUSES:
            return False
        actor = None
        if actor_id is not None:
            actor = get_user_model().objects.filter(pk=actor_id).first()
            if actor is None:  # never widen a user's selection to the system's
                log.warning("redrive job %s: its creator was deleted; claiming stops", job.pk)
                _claimed_all(job)
                return False
        selection = selection_for(actor=actor, ids=None, filters=DeadLetterFilter.parse(pinned))
        done, cursor = _claim_after(job, selection, cursor, CLAIM_CHUNK)
        RedriveJob.objects.filter(pk=job.pk).update(
            claim_cursor=cursor, skipped=F("skipped") + done.skipped, updated_at=timezone.now()
        )
        if cursor is None:
            _claimed_all(job)
    return cursor is not None


def stop_claiming(job: RedriveJob) -> None:
    """Claim nothing more for ``job`` (cancel): its total becomes what it holds."""
    with transaction.atomic():
        if RedriveJob.objects.select_for_update().filter(pk=job.pk, claim_cursor__isnull=False).exists():
            _claimed_all(job)


def _claimed_all(job: RedriveJob) -> None:
    total = RedriveAttempt.objects.filter(job=job).count()
    RedriveJob.objects.filter(pk=job.pk).update(claim_cursor=None, total=total, updated_at=timezone.now())


def _insert_attempts(job: RedriveJob, attempts: list[tuple], *, hold: bool = False) -> set[int]:
    """Write (dead letter id, status, previous status, error, finished_at) attempts of ``job``.
    With ``hold`` the attempts hold their messages and a message another job holds is left out
    (ON CONFLICT DO NOTHING on the one-holder index). Returns the dead letter ids written. One
    INSERT of unnested arrays (``bulk_create`` compiles a dozen placeholders per row)."""
    if not attempts:
        return set()
    meta = RedriveAttempt._meta
    quote = db_connection.ops.quote_name
    col = {name: quote(meta.get_field(name).column) for name in _INSERTED}
    letters, statuses, previous, errors, finished = (list(c) for c in zip(*attempts, strict=True))
    conflict = f" ON CONFLICT ({col['dead_letter']}) WHERE {col['holds']} DO NOTHING" if hold else ""
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(col.values())}) "  # noqa: S608 - quoted identifiers only
        "SELECT %s, v.letter, v.status, v.redrive_id, v.previous, 0, v.error, '', '', v.finished, %s "
        "FROM unnest(%s::bigint[], %s::text[], %s::uuid[], %s::text[], %s::text[], %s::timestamptz[]) "
        f"AS v(letter, status, redrive_id, previous, error, finished) ORDER BY v.letter{conflict} "
        f"RETURNING {col['dead_letter']}"
    )
    redrive_ids = [uuid.uuid4() for _ in attempts]
    with db_connection.cursor() as cursor:
        cursor.execute(sql, [job.pk, hold, letters, statuses, redrive_ids, previous, errors, finished])
        return {letter for (letter,) in cursor.fetchall()}


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
    "holds",
)
