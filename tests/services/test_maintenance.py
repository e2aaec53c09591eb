"""Automatic retry policy, retention purge and archive."""

from datetime import UTC, datetime, timedelta

import pytest

from brokers.base import HarvestedMessage, Origin
from dlqadmin.models import (
    AuditEvent,
    DeadLetter,
    DeadLetterState,
    DeadLetterStatus,
    ErrorGroup,
    RedriveAttempt,
    Source,
)
from dlqadmin.services.connections import connection_create
from dlqadmin.services.dead_letters import dead_letters_archive
from dlqadmin.services.harvest.store import dead_letters_store
from dlqadmin.services.maintenance import auto_retry_candidates, auto_retry_run, retention_purge
from dlqadmin.services.search import search_index_backlog

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def source():
    conn = connection_create(name="rmq", kind="rabbitmq", url="amqp://127.0.0.1:5672/")
    return Source.objects.create(
        connection=conn,
        name="orders",
        mode="queue",
        address="orders.dlq",
        auto_retry=True,
        auto_retry_max_attempts=3,
        auto_retry_backoff_seconds=60,
        max_redrives=10,
    )


def store(source, position, *, retry=0, harvested_minutes_ago=10, error="boom"):
    dead_letters_store(
        source=source,
        batch=[
            HarvestedMessage(
                position=position,
                payload=b"{}",
                origin=Origin(queue="orders.q"),
                error_class="E",
                error_message=error,
                retry_count=retry,
                failed_at=NOW,
            )
        ],
    )
    DeadLetter.objects.filter(position=position).update(
        harvested_at=NOW - timedelta(minutes=harvested_minutes_ago)
    )


def test_backoff_doubles_per_attempt_and_stops_at_the_limit(source):
    store(source, "fresh", retry=0, harvested_minutes_ago=0)  # not due: 60 s backoff
    store(source, "due-1", retry=0, harvested_minutes_ago=2)  # 60 s elapsed: due
    store(source, "wait-2", retry=2, harvested_minutes_ago=3)  # needs 240 s
    store(source, "due-2", retry=2, harvested_minutes_ago=5)
    store(source, "exhausted", retry=3, harvested_minutes_ago=60)  # limit reached: left for a person
    due = set(auto_retry_candidates(source, now=NOW).values_list("position", flat=True))
    assert due == {"due-1", "due-2"}


def test_a_run_creates_a_job_for_due_messages_and_audits_it(source):
    store(source, "a", harvested_minutes_ago=0)
    DeadLetter.objects.update(harvested_at=NOW - timedelta(hours=1))
    (job_id,) = auto_retry_run(now=NOW)
    assert RedriveAttempt.objects.filter(job_id=job_id).count() == 1
    assert AuditEvent.objects.filter(action="policy.auto_retry", actor=None).exists()
    assert auto_retry_run(now=NOW) == []  # the message is queued now; never twice


def test_an_error_group_can_opt_out(source):
    store(source, "a", error="do not retry me")
    ErrorGroup.objects.update(auto_retry=False)
    assert not auto_retry_candidates(source, now=NOW).exists()


def test_an_error_group_can_opt_in_on_a_source_without_policy(source):
    Source.objects.filter(pk=source.pk).update(auto_retry=False)
    source.refresh_from_db()
    store(source, "a")
    assert not auto_retry_candidates(source, now=NOW).exists()
    ErrorGroup.objects.update(auto_retry=True)
    assert auto_retry_candidates(source, now=NOW).exists()


def test_retention_deletes_every_terminal_state_but_not_new_queued_or_held_rows(source):
    from dlqadmin.models import DeadLetterSearch, RedriveJob, SearchBacklog
    from dlqadmin.selectors_dashboard import status_counts

    rows = [
        ("old-resolved", "resolved", 40),
        ("old-new", "new", 40),
        ("old-queued", "queued", 40),
        ("young-discarded", "discarded", 5),
        ("old-archived", "archived", 40),
        ("old-redriven", "redriven", 40),
        ("old-failed", "failed", 40),
        ("old-parked", "parked", 40),
        ("old-failed-held", "failed", 40),
    ]
    for position, status, days in rows:
        store(source, position)
        DeadLetter.objects.filter(position=position).update(
            status=status, failed_at=NOW - timedelta(days=days)
        )
    job = RedriveJob.objects.create(status="running")
    RedriveAttempt.objects.create(
        job=job, dead_letter=DeadLetter.objects.get(position="old-failed-held"), holds=True
    )
    search_index_backlog()
    store(source, "old-unindexed")  # still in the search backlog
    DeadLetter.objects.filter(position="old-unindexed").update(
        status="redriven", failed_at=NOW - timedelta(days=40)
    )

    assert retention_purge(days=30, now=NOW) == 6
    assert set(DeadLetter.objects.values_list("position", flat=True)) == {
        "old-new",
        "old-queued",
        "young-discarded",
        "old-failed-held",
    }
    kept = set(DeadLetter.objects.values_list("pk", flat=True))
    assert set(DeadLetterState.objects.values_list("pk", flat=True)) == kept  # state rows went too
    assert set(DeadLetterSearch.objects.values_list("dead_letter_id", flat=True)) <= kept
    assert set(SearchBacklog.objects.values_list("dead_letter_id", flat=True)) <= kept
    left = {status: n for status, n in status_counts().items() if n}
    assert left == {"new": 1, "queued": 1, "discarded": 1, "failed": 1}  # the tallies follow
    assert AuditEvent.objects.filter(action="retention.purge", count=6).exists()
    assert retention_purge(days=0, now=NOW) == 0


def test_archive_keeps_the_row(source):
    store(source, "a")
    assert dead_letters_archive(actor=None, ids=list(DeadLetter.objects.values_list("id", flat=True))) == 1
    assert DeadLetter.objects.get().status == DeadLetterStatus.ARCHIVED


def test_messages_that_need_a_destination_are_held_back_and_recorded_once_per_increase(source):
    def lost(position):
        dead_letters_store(
            source=source,
            batch=[HarvestedMessage(position=position, payload=b"{}", origin=Origin(), failed_at=NOW)],
        )
        DeadLetter.objects.filter(position=position).update(harvested_at=NOW - timedelta(hours=1))

    lost("lost-1")
    store(source, "known", harvested_minutes_ago=60)
    assert set(auto_retry_candidates(source, now=NOW).values_list("position", flat=True)) == {"known"}
    assert len(auto_retry_run(now=NOW)) == 1
    assert set(RedriveAttempt.objects.values_list("dead_letter__position", flat=True)) == {"known"}
    assert auto_retry_run(now=NOW) == []

    def held():
        return AuditEvent.objects.filter(action="policy.auto_retry.held", target_id=str(source.pk))

    assert [(e.count, e.detail["newly_held"]) for e in held()] == [(1, 1)]
    assert "no origin queue, exchange or routing key" in held()[0].detail["reason"]

    lost("lost-2")
    auto_retry_run(now=NOW)
    auto_retry_run(now=NOW)
    assert sorted((e.count, e.detail["newly_held"]) for e in held()) == [(1, 1), (2, 1)]
    DeadLetter.objects.filter(position="lost-1").update(status=DeadLetterStatus.RESOLVED)
    auto_retry_run(now=NOW)
    assert Source.objects.get(pk=source.pk).auto_retry_held == 1 and held().count() == 2
    assert RedriveAttempt.objects.filter(dead_letter__position__startswith="lost").count() == 0
