"""Claiming a redrive job's messages: each selected dead letter becomes QUEUED and gets one
RedriveAttempt of the job (or a SKIPPED one when the loop guard parks it or it needs a destination
the job does not give).

A job over ids (at most a few thousand) is claimed whole by the request that creates it. A job
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

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from dlqadmin.models import (
    DeadLetter,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveAttemptStatus,
    RedriveJob,
    RedriveJobStatus,
)
from dlqadmin.selectors import DeadLetterFilter, dead_letters_for
from dlqadmin.services import redrive_destination as routes

log = logging.getLogger(__name__)

#: dead letters claimed per transaction
CLAIM_CHUNK = 1000
_RUNNABLE = (RedriveJobStatus.PENDING, RedriveJobStatus.RUNNING)


def selection_for(*, actor, ids: list[int] | None, filters: DeadLetterFilter | None):
    """The messages ``actor`` selected: of the given ids or filter, only those they may see.
    Raises ValueError when neither is given."""
    if ids is not None:
        return dead_letters_for(actor).filter(pk__in=ids)
    if filters is None:
        raise ValueError("give ids or a filter")
    return dead_letters_for(actor, filters)


def claim_selection(job: RedriveJob, selection, *, limit: int | None = None) -> tuple[int, int, int | None]:
    """Claim ``selection`` for ``job`` in id order, :data:`CLAIM_CHUNK` per statement, at most
    ``limit`` ids (None: all). Returns (claimed, skipped, cursor): ``cursor`` is the last id
    considered when the limit stopped the claim before the end, else None."""
    claimed = skipped = considered = 0
    cursor: int | None = 0
    while True:
        count = CLAIM_CHUNK if limit is None else min(CLAIM_CHUNK, limit - considered)
        c, s, cursor = _claim_after(job, selection, cursor, count)
        claimed, skipped, considered = claimed + c, skipped + s, considered + count
        if cursor is None:
            return claimed, skipped, None
        if limit is not None and considered >= limit:
            more = selection.filter(pk__gt=cursor).exists()
            return claimed, skipped, cursor if more else None


def _claim_after(job: RedriveJob, selection, cursor: int, count: int) -> tuple[int, int, int | None]:
    """Claim the first ``count`` messages of ``selection`` with an id above ``cursor``. Returns
    (claimed, skipped, the last id taken), the id None when fewer than ``count`` were left."""
    ids = list(selection.filter(pk__gt=cursor).order_by("id").values_list("id", flat=True)[:count])
    claimed, skipped = claim_chunk(job, ids) if ids else (0, 0)
    return claimed, skipped, ids[-1] if len(ids) == count else None


def claim_chunk(job: RedriveJob, ids: list[int]) -> tuple[int, int]:
    """Lock the chunk's messages (those not in another active job), mark them QUEUED and write
    their attempts; loop-guarded ones, and those that need a destination the job does not give,
    get a SKIPPED attempt instead. Reads only the columns it
    needs (not the payloads). Returns (claimed, skipped)."""
    rows = (
        DeadLetter.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk__in=ids)
        .exclude(status=DeadLetterStatus.QUEUED)
        .annotate(needs=routes.needs_destination(job.destination))
        .values_list("pk", "status", "retry_count", "source__max_redrives", "needs", routes.KIND)
    )
    attempts, claim_ids, now = [], [], timezone.now()
    for pk, status, retry_count, max_redrives, needs, kind in rows:
        parked = status == DeadLetterStatus.PARKED or (max_redrives and retry_count >= max_redrives)
        if parked and not job.override_loop_guard:
            error = (
                f"loop guard: redriven {retry_count} time(s), limit {max_redrives}; override to redrive again"
            )
            attempts.append((pk, RedriveAttemptStatus.SKIPPED, status, error, now))
            continue
        if needs:  # no origin recorded, no override: never sent to fail at the broker
            attempts.append((pk, RedriveAttemptStatus.SKIPPED, status, routes.needs_reason(kind), now))
            continue
        claim_ids.append(pk)
        attempts.append((pk, RedriveAttemptStatus.PENDING, status, "", None))
    claimed = DeadLetter.objects.filter(pk__in=claim_ids).update(status=DeadLetterStatus.QUEUED)
    _insert_attempts(job, attempts)
    return claimed, len(attempts) - len(claim_ids)


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
        if status not in _RUNNABLE:
            return False
        actor = None
        if actor_id is not None:
            actor = get_user_model().objects.filter(pk=actor_id).first()
            if actor is None:  # never widen a user's selection to the system's
                log.warning("redrive job %s: its creator was deleted; claiming stops", job.pk)
                _claimed_all(job)
                return False
        selection = selection_for(actor=actor, ids=None, filters=DeadLetterFilter.parse(pinned))
        _, skipped, cursor = _claim_after(job, selection, cursor, CLAIM_CHUNK)
        RedriveJob.objects.filter(pk=job.pk).update(
            claim_cursor=cursor, skipped=F("skipped") + skipped, updated_at=timezone.now()
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
