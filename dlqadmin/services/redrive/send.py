"""One chunk of a redrive job: claim it, build its messages, publish them, record the outcomes.

The publish runs on the process's broker loop (:mod:`brokers.shared`): the adapter, and so the
broker connection, is reused from chunk to chunk, and the calling thread is free to record the
previous chunk and claim the next one while the broker confirms this one
(``pipeline.Pipeline``). Everything that touches the database runs on the calling thread.

A chunk is claimed under a fencing token and a lease (:mod:`dlqadmin.services.redrive.lease`):
its outcomes are recorded, and its attempts given back, only while that token still owns them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
import uuid
from dataclasses import dataclass, field

from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from brokers import shared
from brokers.base import (
    BrokerError,
    ConnectionConfig,
    Destination,
    HeaderPolicy,
    Origin,
    RedriveMessage,
    RedriveOutcome,
)
from dlqadmin.models import (
    Connection,
    CounterName,
    DeadLetterRevision,
    DeadLetterState,
    DeadLetterStatus,
    RedriveAttempt,
    RedriveAttemptStatus,
    RedriveJob,
)
from dlqadmin.services import connection_health
from dlqadmin.services.connections import connection_config
from dlqadmin.services.counters import counters_add_for_letters
from dlqadmin.services.redrive import lease as redrive_lease
from dlqadmin.services.redrive.lease import Keeper

log = logging.getLogger("dlqadmin.services.redrive_worker")

TRANSIENT_RETRIES = 4
UNAVAILABLE = "payload no longer available on the broker; nothing to send"

#: what a chunk reads per attempt: the attempt, its dead letter, the dead letter's connection.
_FIELDS = (
    "pk",
    "redrive_id",
    "dead_letter_id",
    "dead_letter__source_id",
    "dead_letter__source__connection_id",
    "dead_letter__payload_available",
    "dead_letter__payload",
    "dead_letter__headers",
    "dead_letter__properties",
    "dead_letter__key",
    "dead_letter__origin_exchange",
    "dead_letter__origin_routing_key",
    "dead_letter__origin_queue",
    "dead_letter__origin_topic",
    "dead_letter__origin_partition",
    "dead_letter__origin_offset",
    "dead_letter__origin_stream",
    "dead_letter__origin_subject",
    "dead_letter__origin_seq",
    "dead_letter__origin_extra",
    "dead_letter__retry_count",
)


@dataclass(slots=True)
class Item:
    """One claimed attempt: its ids and the message to send (None: nothing can be sent)."""

    pk: int
    dead_letter_id: int
    source_id: int
    connection_id: int
    revision_id: int | None
    message: RedriveMessage | None


@dataclass
class Chunk:
    """Claimed attempts of one job, on their way to the broker, owned under ``token`` (the
    fencing token of the claim: only its holder renews the lease and records the outcomes)."""

    job: RedriveJob
    items: list[Item]
    token: uuid.UUID | None = None
    future: concurrent.futures.Future | None = None
    started: float = 0.0
    known: dict[int, RedriveOutcome] = field(default_factory=dict)

    def start(self, configs: dict[int, ConnectionConfig]) -> None:
        """Start publishing on the broker loop (returns at once). ``configs`` caches the
        connection settings by connection id across chunks."""
        groups: dict[int, list[RedriveMessage]] = {}
        for item in self.items:
            if item.message is None:
                self.known[item.pk] = RedriveOutcome(ref=item.pk, ok=False, permanent=True, error=UNAVAILABLE)
            else:
                groups.setdefault(item.connection_id, []).append(item.message)
        missing = [pk for pk in groups if pk not in configs]
        if missing:
            for conn in Connection.objects.filter(pk__in=missing):
                configs[conn.pk] = connection_config(conn)
        job = self.job
        destination = Destination(**job.destination) if job.destination else None
        policy = HeaderPolicy(**job.header_policy) if job.header_policy else HeaderPolicy()
        work = []
        for pk, messages in groups.items():
            if pk in configs:
                work.append((configs[pk], messages))
                continue
            for message in messages:  # the connection was deleted since the job was created
                self.known[message.ref] = RedriveOutcome(
                    ref=message.ref, ok=False, permanent=True, error="the broker connection no longer exists"
                )
        self.started = time.monotonic()
        if work:
            self.future = shared.submit(_publish_all, job.pk, work, destination, policy)

    def results(self, keeper: Keeper | None = None) -> list[tuple[Item, RedriveOutcome]]:
        """Wait for the broker's answers: one outcome per item, in order. With a ``keeper``, the
        leases it keeps are renewed while the broker takes its time."""
        outcomes = dict(self.known)
        if self.future is not None:
            if keeper is not None:
                keeper.wait(self.future)
            for outcome in self.future.result():
                outcomes.setdefault(outcome.ref, outcome)
        return [
            (
                item,
                outcomes.get(item.pk) or RedriveOutcome(ref=item.pk, ok=False, error="no outcome reported"),
            )
            for item in self.items
        ]


# --------------------------------------------------------------------------------------------
# Claim


def claim(job: RedriveJob, size: int) -> Chunk | None:
    """Claim up to ``size`` pending attempts of ``job`` (SKIP LOCKED: concurrent workers take
    different ones) under a new fencing token and lease, and build their messages. None when
    nothing is pending."""
    token, expires = redrive_lease.new_lease()
    with transaction.atomic():
        ids = list(
            RedriveAttempt.objects.select_for_update(skip_locked=True)
            .filter(job=job, status=RedriveAttemptStatus.PENDING)
            .order_by("id")
            .values_list("id", flat=True)[:size]
        )
        if not ids:
            return None
        RedriveAttempt.objects.filter(pk__any=ids).update(
            status=RedriveAttemptStatus.CLAIMED,
            claimed_at=timezone.now(),
            tries=F("tries") + 1,
            lease_token=token,
            lease_expires_at=expires,
        )
    attempts = RedriveAttempt.objects.filter(pk__any=ids).order_by("id")
    if not job.use_revisions:
        rows = list(attempts.values_list(*_FIELDS))
        return Chunk(job=job, items=[_item(row, None) for row in rows], token=token)
    latest = (
        DeadLetterRevision.objects.filter(dead_letter=OuterRef("dead_letter"))
        .order_by("-created_at", "-id")
        .values("pk")[:1]
    )
    rows = list(attempts.annotate(latest_revision=Subquery(latest)).values_list(*_FIELDS, "latest_revision"))
    edited = [row[-1] for row in rows if row[-1] is not None]
    revisions = DeadLetterRevision.objects.in_bulk(edited) if edited else {}
    return Chunk(job=job, items=[_item(row[:-1], revisions.get(row[-1])) for row in rows], token=token)


def unclaim(chunk: Chunk) -> int:
    """Give back a chunk that was claimed but never published (the job was paused or
    cancelled meanwhile); returns how many attempts went back to pending (only those this
    chunk's claim still owns)."""
    return RedriveAttempt.objects.filter(
        pk__any=[item.pk for item in chunk.items],
        status=RedriveAttemptStatus.CLAIMED,
        lease_token=chunk.token,
    ).update(
        status=RedriveAttemptStatus.PENDING,
        claimed_at=None,
        tries=F("tries") - 1,
        lease_token=None,
        lease_expires_at=None,
    )


def _item(row: tuple, revision: DeadLetterRevision | None) -> Item:
    (
        pk,
        redrive_id,
        letter_id,
        source_id,
        connection_id,
        available,
        payload,
        headers,
        properties,
        key,
        exchange,
        routing_key,
        queue,
        topic,
        partition,
        offset,
        stream,
        subject,
        seq,
        extra,
        retry_count,
    ) = row
    revision_id = revision.pk if revision is not None else None
    if not available:
        return Item(pk, letter_id, source_id, connection_id, revision_id, None)
    extra = dict(extra or {})
    if revision is not None:
        payload, headers = revision.payload, revision.headers
    message = RedriveMessage(
        ref=pk,
        redrive_id=str(redrive_id),
        payload=bytes(payload),
        headers=headers or [],
        properties=properties or {},
        key=bytes(key) if key is not None else None,
        origin=Origin(
            exchange=exchange,
            routing_key=routing_key,
            routing_keys=list(extra.pop("routing_keys", []) or []),
            queue=queue,
            topic=topic,
            partition=partition,
            offset=offset,
            stream=stream,
            subject=subject,
            seq=seq,
            extra=extra,
        ),
        retry_count=retry_count,
    )
    return Item(pk, letter_id, source_id, connection_id, revision_id, message)


# --------------------------------------------------------------------------------------------
# Publish (on the broker loop)


async def _publish_all(job_id: int, work, destination, policy) -> list[RedriveOutcome]:
    results = await asyncio.gather(
        *(_publish(job_id, config, messages, destination, policy) for config, messages in work)
    )
    return [outcome for outcomes in results for outcome in outcomes]


async def _publish(
    job_id: int,
    config: ConnectionConfig,
    messages: list[RedriveMessage],
    destination: Destination | None,
    policy: HeaderPolicy,
) -> list[RedriveOutcome]:
    """Publish with the loop's adapter for ``config``; retry transient failures with
    exponential backoff, each time on a new connection (the old one may be what broke)."""
    pending = {m.ref: m for m in messages}
    final: dict[int, RedriveOutcome] = {}
    for attempt_no in range(TRANSIENT_RETRIES + 1):
        adapter = None
        try:
            adapter = await shared.adapter(config)
            outcomes = await adapter.redrive(
                list(pending.values()), destination=destination, header_policy=policy
            )
        except BrokerError as exc:
            outcomes = [
                RedriveOutcome(ref=ref, ok=False, permanent=exc.permanent, error=str(exc)) for ref in pending
            ]
        transient = False
        for outcome in outcomes:
            if outcome.ok or outcome.permanent or attempt_no == TRANSIENT_RETRIES:
                final[outcome.ref] = outcome
                pending.pop(outcome.ref, None)
            transient = transient or not (outcome.ok or outcome.permanent)
        if transient:
            await shared.discard(config, adapter)  # not one another chunk made meanwhile
        if not pending or attempt_no == TRANSIENT_RETRIES:
            break
        delay = min(10.0, 0.25 * 2**attempt_no)
        log.info("redrive job %s: %d transient failure(s), retrying in %.2fs", job_id, len(pending), delay)
        await asyncio.sleep(delay)
    return list(final.values())


# --------------------------------------------------------------------------------------------
# Record


def record(chunk: Chunk, results: list[tuple[Item, RedriveOutcome]]) -> int:
    """Record a chunk's outcomes in one transaction (one commit per chunk, not per message);
    returns how many attempts were recorded.

    Each attempt is updated only while it is still CLAIMED under the chunk's token: an attempt
    whose lease expired and was taken over by another claim is refused (and logged), so a late
    owner never overwrites the new owner's outcome and nothing is counted twice. A dead letter
    becomes REDRIVEN only with an ``ok`` outcome, i.e. after the broker confirmed it."""
    job = chunk.job
    if not results:
        return 0
    now = timezone.now()
    rows = []
    for item, outcome in results:
        status = RedriveAttemptStatus.SUCCEEDED if outcome.ok else RedriveAttemptStatus.FAILED
        error = (
            outcome.error
            if outcome.ok
            else f"{'permanent' if outcome.permanent else 'transient'}: {outcome.error}"
        )
        rows.append(
            (
                item.pk,
                status,
                error[:2000],
                outcome.destination[:600],
                outcome.position[:200],
                item.revision_id,
            )
        )
    items = {item.pk: item for item, _ in results}
    with transaction.atomic():
        recorded = _update_claimed(rows, now, chunk.token)
        sent, failed = [], []
        for pk, status, *_ in rows:
            if pk in recorded:
                (sent if status == RedriveAttemptStatus.SUCCEEDED else failed).append(items[pk])
        if sent:
            DeadLetterState.objects.filter(pk__any=[item.dead_letter_id for item in sent]).update(
                status=DeadLetterStatus.REDRIVEN, redrive_count=F("redrive_count") + 1, last_redriven_at=now
            )
        if failed:
            DeadLetterState.objects.filter(pk__any=[item.dead_letter_id for item in failed]).update(
                status=DeadLetterStatus.FAILED
            )
        # monotonic counters for /metrics (a purge never lowers them)
        counters_add_for_letters(name=CounterName.REDRIVEN, source_ids=[item.source_id for item in sent])
        counters_add_for_letters(
            name=CounterName.REDRIVE_FAILED, source_ids=[item.source_id for item in failed]
        )
        if recorded:
            RedriveJob.objects.filter(pk=job.pk).update(
                succeeded=F("succeeded") + len(sent), failed=F("failed") + len(failed), updated_at=now
            )
    _observe_connections(results)
    if len(recorded) < len(rows):
        refused = len(rows) - len(recorded)
        log.warning(
            "redrive job %s: %d outcome(s) of claim %s refused: the claim no longer owns them "
            "(its lease expired and another claim took them over)",
            job.pk,
            refused,
            chunk.token,
        )
    return len(recorded)


def _observe_connections(results: list[tuple[Item, RedriveOutcome]]) -> None:
    """What this chunk says about its connections' health: a confirmed message means the broker
    works; only transient failures and no success mean it does not (a permanent failure is the
    message's problem, e.g. a missing destination). Rate-limited in ``connection_observe``."""
    seen: dict[int, tuple[bool, str]] = {}
    for item, outcome in results:
        if item.message is None:
            continue  # nothing was sent
        ok, error = seen.get(item.connection_id, (False, ""))
        if outcome.ok:
            seen[item.connection_id] = (True, "")
        elif not ok and not outcome.permanent and not error:
            seen[item.connection_id] = (False, f"redrive publish failed: {outcome.error}")
    for connection_id, (ok, error) in seen.items():
        if ok or error:
            connection_health.connection_observe(
                connection_id=connection_id, ok=ok, by=connection_health.REDRIVE_WORKER, error=error
            )


def _update_claimed(rows: list[tuple], now, token) -> set[int]:
    """Set (status, error, destination, broker_position, revision) on each attempt of ``rows``
    that is still CLAIMED under ``token``; returns the ids updated, in one statement."""
    meta = RedriveAttempt._meta
    quote = db_connection.ops.quote_name
    col = {name: quote(meta.get_field(name).column) for name in _RECORDED}
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    sql = (
        f"UPDATE {table} AS a SET {col['status']} = v.status, "  # noqa: S608 - quoted identifiers only
        f"{col['error']} = v.error, {col['destination']} = v.destination, "
        f"{col['broker_position']} = v.position, {col['revision']} = v.revision, {col['finished_at']} = %s, "
        f"{col['lease_token']} = NULL, {col['lease_expires_at']} = NULL "
        "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[]) "
        "AS v(id, status, error, destination, position, revision) "
        f"WHERE a.{pk} = v.id AND a.{col['status']} = %s AND a.{col['lease_token']} = %s RETURNING a.{pk}"
    )
    columns = [list(values) for values in zip(*rows, strict=True)]
    with db_connection.cursor() as cursor:
        cursor.execute(sql, [now, *columns, RedriveAttemptStatus.CLAIMED, token])
        return {pk for (pk,) in cursor.fetchall()}


_RECORDED = (
    "status",
    "error",
    "destination",
    "broker_position",
    "revision",
    "finished_at",
    "lease_token",
    "lease_expires_at",
)
