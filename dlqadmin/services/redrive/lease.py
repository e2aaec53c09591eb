"""Who owns what in a redrive: the job that holds a message, the chunk claim that leases an attempt.

Two levels of ownership, both enforced by conditional writes the database arbitrates:

* **A message belongs to at most one active job.** The job's attempt for it ``holds`` it from
  the claim until the job ends (or the attempt is released unsent, e.g. on cancel); a unique
  index on ``dead_letter`` over holding attempts makes a second holder impossible, and claims
  insert with ``ON CONFLICT DO NOTHING`` against it (:mod:`dlqadmin.services.redrive.claim`).
  A message already sent by a job that is still running stays held: a second job over the same
  ids skips it as "busy in job #N" instead of sending it again.
* **An attempt in flight is owned by one chunk claim.** Claiming a chunk writes a fresh
  ``lease_token`` (the fencing token) and ``lease_expires_at`` on its attempts; the owner renews
  the lease while it waits for the broker (:class:`Keeper`), so a worker that is alive is never
  taken over, however long the broker holds a chunk. Only after the lease expired (the worker
  died or froze) is the attempt taken back (:func:`reclaim_expired`) and claimed again under a
  new token. Outcomes are recorded only under the token that claimed them, so a late owner's
  outcome is refused (and logged) instead of overwriting the new owner's.

The lease lasts ``DLQADMIN_STALE_CLAIM_SECONDS`` and is renewed every third of that.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from dlqadmin.models import (
    ACTIVE_JOB_STATUSES,
    DeadLetterState,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveAttemptStatus,
    RedriveJob,
)

log = logging.getLogger("dlqadmin.services.redrive_worker")

ACTIVE_ATTEMPT = (RedriveAttemptStatus.PENDING, RedriveAttemptStatus.CLAIMED)
#: orphans released per maintenance pass
RELEASE_BATCH = 1000


def lease_seconds() -> float:
    return max(1, settings.DLQADMIN_STALE_CLAIM_SECONDS)


def renew_every() -> float:
    return lease_seconds() / 3


def new_lease() -> tuple[uuid.UUID, object]:
    """A fresh fencing token and the expiry of its lease."""
    return uuid.uuid4(), timezone.now() + timedelta(seconds=lease_seconds())


def renew(job_id: int, tokens: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Extend the lease of the attempts still claimed under ``tokens``; returns the tokens that
    still own something (a token missing from the answer lost its claim: taken over after its
    lease expired, or recorded). Also shows the job is alive (``updated_at``)."""
    tokens = list(tokens)
    if not tokens:
        return set()
    now = timezone.now()
    with transaction.atomic():
        kept = set(
            # by job and status first: the (job, status, id) index finds the few claimed rows
            RedriveAttempt.objects.filter(
                job_id=job_id, status=RedriveAttemptStatus.CLAIMED, lease_token__in=tokens
            )
            .order_by("id")
            .select_for_update()
            .values_list("lease_token", flat=True)
        )
        if kept:
            RedriveAttempt.objects.filter(
                job_id=job_id, status=RedriveAttemptStatus.CLAIMED, lease_token__in=kept
            ).update(lease_expires_at=now + timedelta(seconds=lease_seconds()))
            RedriveJob.objects.filter(pk=job_id).update(updated_at=now)
    for token in set(tokens) - kept:  # the record step logs a takeover as a warning
        log.info("redrive job %s: claim %s no longer holds anything (recorded or taken over)", job_id, token)
    return kept


def reclaim_expired(job: RedriveJob) -> int:
    """Put back to pending the attempts of ``job`` whose lease expired (their worker died or
    stopped renewing); they are claimed again under a new token. Returns how many."""
    expired = Q(lease_expires_at__lt=timezone.now()) | Q(lease_expires_at__isnull=True)
    n = RedriveAttempt.objects.filter(expired, job=job, status=RedriveAttemptStatus.CLAIMED).update(
        status=RedriveAttemptStatus.PENDING, lease_token=None, lease_expires_at=None
    )
    if n:
        log.warning("redrive job %s: took back %d attempt(s) whose lease expired", job.pk, n)
    return n


def next_expiry(job: RedriveJob) -> float | None:
    """Seconds until the first lease of ``job`` held by someone expires (None: nothing claimed)."""
    first = list(
        RedriveAttempt.objects.filter(job=job, status=RedriveAttemptStatus.CLAIMED)
        .order_by(F("lease_expires_at").asc(nulls_first=True))
        .values_list("lease_expires_at", flat=True)[:1]
    )
    if not first:
        return None
    return 0.0 if first[0] is None else max(0.0, (first[0] - timezone.now()).total_seconds())


def release_holds(job: RedriveJob) -> int:
    """The job ended: its messages may join other jobs."""
    return RedriveAttempt.objects.filter(job=job, holds=True).update(holds=False)


class Keeper:
    """Renews the leases of the chunks a worker holds while it waits (for the broker, for the
    velocity limit). ``tokens`` is a callable returning the tokens currently held."""

    def __init__(self, job_id: int, tokens):
        self.job_id, self.tokens = job_id, tokens
        self.renewed_at = time.monotonic()

    def tick(self) -> None:
        if time.monotonic() - self.renewed_at >= renew_every():
            renew(self.job_id, self.tokens())
            self.renewed_at = time.monotonic()

    def wait(self, future=None, seconds: float | None = None) -> None:
        """Wait for ``future`` to be done, or ``seconds`` to pass, renewing on the way (one of
        the two must be given)."""
        if future is None and seconds is None:
            raise ValueError("wait for a future or some seconds")
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            self.tick()
            step = max(0.0, self.renewed_at + renew_every() - time.monotonic())
            if deadline is not None:
                step = min(step, deadline - time.monotonic())
                if step <= 0:
                    return
            if future is not None:
                try:
                    future.result(timeout=step)
                except TimeoutError:
                    continue
                except Exception:  # noqa: BLE001 - the caller reads the future and raises
                    return
                return
            time.sleep(step)


# --------------------------------------------------------------------------------------------
# Way out for what no worker will settle any more


def release_orphans() -> int:
    """Settle what no job will settle any more (run by the watchdog):

    * attempts still pending or claimed in a finished job (e.g. left by an old version that could
      finish a job under a worker's uncommitted claim): skipped, message back to its status;
    * their holds (released; a claim also drops a hold whose job ended when it meets one);
    * QUEUED messages without any pending or claimed attempt (their job was deleted): back to the
      status before their last attempt, or NEW.

    Each message is locked first and checked again, so a claim committing meanwhile wins.
    Returns how many messages were released."""
    released = 0
    finished = RedriveJob.objects.exclude(status__in=ACTIVE_JOB_STATUSES)
    with transaction.atomic():
        rows = list(
            RedriveAttempt.objects.select_for_update(skip_locked=True)
            .filter(job__in=finished, status__in=ACTIVE_ATTEMPT)
            .values_list("pk", "dead_letter_id", "previous_status", "job_id")[:RELEASE_BATCH]
        )
        if rows:
            RedriveAttempt.objects.filter(pk__in=[r[0] for r in rows]).update(
                status=RedriveAttemptStatus.SKIPPED,
                holds=False,
                lease_token=None,
                error="released: the job ended without sending it",
                finished_at=timezone.now(),
            )
            for job_id in {r[3] for r in rows}:
                n = sum(1 for r in rows if r[3] == job_id)
                RedriveJob.objects.filter(pk=job_id).update(skipped=F("skipped") + n)
            log.warning("released %d attempt(s) left pending or claimed in finished jobs", len(rows))
            RedriveAttempt.objects.filter(job_id__in={r[3] for r in rows}, holds=True).update(holds=False)
        released += _restore(
            {letter: previous for _, letter, previous, _ in rows},
        )
    with transaction.atomic():
        active = RedriveAttempt.objects.filter(dead_letter=OuterRef("pk"), status__in=ACTIVE_ATTEMPT)
        candidates = list(
            DeadLetterState.objects.filter(status=DeadLetterStatus.QUEUED)
            .filter(~Exists(active))
            .values_list("pk", flat=True)[:RELEASE_BATCH]
        )
        if candidates:
            last = {}
            for letter, previous in (
                RedriveAttempt.objects.filter(dead_letter_id__in=candidates)
                .order_by("dead_letter_id", "id")
                .values_list("dead_letter_id", "previous_status")
            ):
                last[letter] = previous
            released += _restore({pk: last.get(pk) for pk in candidates})
    return released


def _restore(previous_by_letter: dict[int, str | None]) -> int:
    """Lock the QUEUED messages given, keep those with no pending or claimed attempt (checked
    after the lock, in a new statement: a claim that committed meanwhile is seen) and give them
    back their previous status. Returns how many."""
    if not previous_by_letter:
        return 0
    locked = list(
        DeadLetterState.objects.select_for_update(skip_locked=True)
        .filter(pk__in=list(previous_by_letter), status=DeadLetterStatus.QUEUED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    busy = set(
        RedriveAttempt.objects.filter(dead_letter_id__in=locked, status__in=ACTIVE_ATTEMPT).values_list(
            "dead_letter_id", flat=True
        )
    )
    by_status: dict[str, list[int]] = {}
    for pk in locked:
        if pk not in busy:
            previous = previous_by_letter[pk]
            if not previous or previous == DeadLetterStatus.QUEUED:
                previous = DeadLetterStatus.NEW
            by_status.setdefault(previous, []).append(pk)
    n = 0
    for status, letters in by_status.items():
        n += DeadLetterState.objects.filter(pk__in=letters).update(status=status)
    if n:
        log.warning("released %d queued message(s) no redrive job will send", n)
    return n
