"""Dashboard tallies (issue 8): the overview, connections and error-group pages read per-status,
per-hour and per-day totals that triggers keep, never aggregating the dead-letter table. The
totals must equal what counting the dead letters themselves says, after every kind of write."""

import hashlib
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dlqadmin import selectors_dashboard, tally_sql
from dlqadmin.models import Connection, DeadLetter, DeadLetterStatus, ErrorGroup, Source
from dlqadmin.selectors import limit_to_visible, visible_sources
from dlqadmin.services.dead_letters import dead_letters_discard, dead_letters_resolve
from dlqadmin.services.maintenance import retention_purge
from tests.views.conftest import harvested

pytestmark = pytest.mark.django_db


def _ranked(timeline: dict) -> dict:
    """``timeline`` with sources of equal totals in name order (the selector ranks only by total)."""
    named = [s for s in timeline["series"] if s["label"] != "other sources"]
    totals = [sum(s["data"]) for s in named]
    assert totals == sorted(totals, reverse=True), timeline  # busiest first
    rest = timeline["series"][len(named) :]
    return {**timeline, "series": sorted(named, key=lambda s: (-sum(s["data"]), s["label"])) + rest}


def everything(*, user=None, now=None) -> dict:
    """What the dashboard shows, read through the selectors."""
    now = now or timezone.now()
    groups = list(ErrorGroup.objects.values_list("pk", flat=True))
    figures = {
        "status": selectors_dashboard.status_counts(user=user),
        "sources": [
            (row.connection.pk, s.source.pk, s.open, s.last_24h)
            for row in selectors_dashboard.connections_overview(user=user, now=now)
            for s in row.sources
        ],
        "24h": selectors_dashboard.failures_timeline(hours=24, bucket_hours=1, user=user, now=now),
        "7d": selectors_dashboard.failures_timeline(hours=7 * 24, bucket_hours=6, user=user, now=now),
        "sparks": selectors_dashboard.group_sparklines(groups, days=14, now=now),
        "group status": {
            group.pk: selectors_dashboard.group_status_counts(group) for group in ErrorGroup.objects.all()
        },
    }
    return {**figures, "24h": _ranked(figures["24h"]), "7d": _ranked(figures["7d"])}


def _timeline(letters: list[DeadLetter], names: dict, *, hours: int, bucket_hours: int, now) -> dict:
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start, buckets = end - timedelta(hours=hours), hours // bucket_hours
    counts: dict[int, list[int]] = {}
    for letter in letters:
        index = int((letter.failed_at - start).total_seconds() // (bucket_hours * 3600))
        if start <= letter.failed_at < end and index < buckets:
            counts.setdefault(letter.source_id, [0] * buckets)[index] += 1
    ranked = sorted(counts.items(), key=lambda item: -sum(item[1]))
    series = [{"label": names[pk], "data": data} for pk, data in ranked]
    assert len(series) <= selectors_dashboard.CHART_SERIES  # no "other sources" in these worlds
    return _ranked(
        {
            "labels": [(start + timedelta(hours=i * bucket_hours)).isoformat() for i in range(buckets)],
            "series": series,
            "bucket_hours": bucket_hours,
        }
    )


def from_the_table(*, user=None) -> dict:
    """The same figures counted in Python from the dead letters ``user`` may see (the oracle)."""
    now = timezone.now()
    letters = list(limit_to_visible(DeadLetter.objects.all(), user))
    names = dict(Source.objects.values_list("pk", "name"))
    status = dict.fromkeys(DeadLetterStatus.values, 0)
    for letter in letters:
        status[letter.status] += 1
    sources = []
    for connection_pk in Connection.objects.order_by("name").values_list("pk", flat=True):
        for source in visible_sources(user).filter(connection_id=connection_pk).order_by("name"):
            mine = [d for d in letters if d.source_id == source.pk]
            open_ = sum(d.status in selectors_dashboard.OPEN_STATUSES for d in mine)
            recent = sum(d.failed_at >= now - timedelta(hours=24) for d in mine)
            sources.append((connection_pk, source.pk, open_, recent))
    end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    sparks = {pk: [0] * 14 for pk in ErrorGroup.objects.values_list("pk", flat=True)}
    for letter in DeadLetter.objects.filter(error_group__isnull=False):
        index = 14 + int((letter.failed_at - end).total_seconds() // 86400)
        if 0 <= index < 14:
            sparks[letter.error_group_id][index] += 1
    group_status = {pk: dict.fromkeys(DeadLetterStatus.values, 0) for pk in sparks}
    for letter in DeadLetter.objects.filter(error_group__isnull=False):
        group_status[letter.error_group_id][letter.status] += 1
    return {
        "status": status,
        "sources": sources,
        "24h": _timeline(letters, names, hours=24, bucket_hours=1, now=now),
        "7d": _timeline(letters, names, hours=7 * 24, bucket_hours=6, now=now),
        "sparks": sparks,
        "group status": group_status,
    }


@pytest.fixture
def busy(store, connection_and_sources):
    """Dead letters in two sources and several groups, spread over two weeks."""
    orders, billing = connection_and_sources
    store(*[harvested(error=f"order {i} not found", minutes_ago=i * 97) for i in range(40)], into=orders)
    store(
        *[harvested(error="timeout", error_class="Timeout", minutes_ago=i * 331) for i in range(30)],
        into=orders,
    )
    store(*[harvested(error="card declined", minutes_ago=i * 53) for i in range(25)], into=billing)
    return orders, billing


@pytest.fixture
def connection_and_sources(source, connection):
    billing = Source.objects.create(connection=connection, name="billing-dlq", mode="queue", address="b.dlq")
    return source, billing


def test_the_tallies_match_the_table_after_inserts_updates_and_deletes(busy, store, operator):
    orders, billing = busy
    assert everything() == from_the_table()
    DeadLetter.objects.filter(source=orders, pk__in=DeadLetter.objects.values("pk")[:17]).update(
        status="resolved"
    )
    DeadLetter.objects.filter(source=billing).update(status="failed")
    DeadLetter.objects.filter(pk__in=DeadLetter.objects.values("pk")[20:25]).update(error_group=None)
    other_group = ErrorGroup.objects.exclude(pk=DeadLetter.objects.order_by("pk")[50].error_group_id).first()
    DeadLetter.objects.filter(pk__in=DeadLetter.objects.order_by("pk").values("pk")[50:54]).update(
        error_group=other_group, status="parked"
    )  # another group and another status in one statement
    moved = DeadLetter.objects.order_by("pk").values("pk")[30:33]
    DeadLetter.objects.filter(pk__in=moved).update(failed_at=timezone.now() - timedelta(days=3, minutes=7))
    DeadLetter.objects.filter(pk__in=DeadLetter.objects.values("pk")[40:46]).delete()
    store(harvested(minutes_ago=0.5), harvested(minutes_ago=24 * 60 - 1), into=billing)
    assert everything() == from_the_table()
    assert everything(user=operator) == from_the_table(user=operator)


def test_compacting_the_deltas_keeps_every_total(busy, store):
    _, billing = busy
    DeadLetter.objects.filter(source=billing).update(status="redriven")
    before = everything()
    with connection.cursor() as cursor:
        cursor.execute("SELECT dlqadmin_tally_compact()")
        cursor.execute("SELECT count(*) FROM dlqadmin_statustally WHERE delta")
        assert cursor.fetchone()[0] == 0
        cursor.execute("SELECT count(*) FROM dlqadmin_groupstatustally WHERE delta")
        assert cursor.fetchone()[0] == 0
    assert everything() == before == from_the_table()
    for i in range(150):  # enough statements for the triggers' own compaction to run too
        DeadLetter.objects.filter(pk=DeadLetter.objects.order_by("pk")[i % 90].pk).update(
            status="resolved" if i % 2 else "new"
        )
    assert everything() == from_the_table()


def test_the_group_counts_follow_the_services_that_settle_and_purge(busy, operator):
    """Settled through the services operators use, then purged by retention (old ones deleted row
    by row, in chunks): the group page's counts still equal counting the group's dead letters."""
    ids = list(DeadLetter.objects.order_by("pk").values_list("pk", flat=True))
    dead_letters_resolve(actor=operator, ids=ids[:30])
    dead_letters_discard(actor=operator, ids=ids[60:80])
    assert everything() == from_the_table()
    assert retention_purge(days=1, chunk=7) > 0
    assert everything() == from_the_table()


def test_a_restricted_source_is_left_out_of_the_tallied_figures(as_user, operator):
    from tests.support.access_world import build

    world = build()
    seen = everything(user=operator)
    assert seen == from_the_table(user=operator)
    assert world.secret.pk not in {pk for _, pk, _, _ in seen["sources"]}
    assert sum(seen["status"].values()) == DeadLetter.objects.exclude(source=world.secret).count()


@pytest.mark.parametrize("name", ["dlq-overview", "dlq-groups", "dlq-connections"])
def test_the_pages_never_aggregate_the_dead_letter_table(as_user, admin_user, busy, name):
    with CaptureQueriesContext(connection) as captured:
        assert as_user(admin_user).get(reverse(name)).status_code == 200
    scans = [
        q["sql"]
        for q in captured.captured_queries
        if '"dlqadmin_deadletter"' in q["sql"] and "GROUP BY" in q["sql"].upper()
    ]
    # the only aggregate left: the minutes of the first hour of "last 24 h", a bounded range
    assert all('"failed_at" <' in sql for sql in scans), scans


def test_the_group_page_sparkline_and_counts_come_from_the_tallies(as_user, operator, busy):
    group = ErrorGroup.objects.order_by("-count").first()
    with CaptureQueriesContext(connection) as captured:
        assert as_user(operator).get(reverse("dlq-group", args=[group.pk])).status_code == 200
    sqls = [q["sql"] for q in captured.captured_queries]
    assert any("dlqadmin_groupdaytally" in sql for sql in sqls)
    assert any("dlqadmin_groupstatustally" in sql for sql in sqls)
    assert not [sql for sql in sqls if '"dlqadmin_deadletterstate"' in sql and "GROUP BY" in sql.upper()]


def test_the_database_runs_the_trigger_sql_of_the_named_module():
    """Migration 0009 installs exactly the functions and triggers ``dlqadmin/tally_sql.py`` holds
    (the module the docs and ``models/tallies.py`` point to), not a copy of its own."""
    bodies = tally_sql.functions().split("$$")[1::2]  # the plpgsql bodies, as pg_proc stores them
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT proname, prosrc FROM pg_proc WHERE proname IN "
            "('dlqadmin_tally_compact', 'dlqadmin_deadletter_tally') ORDER BY proname DESC"
        )
        assert cursor.fetchall() == [
            ("dlqadmin_tally_compact", bodies[0]),
            ("dlqadmin_deadletter_tally", bodies[1]),
        ]
        cursor.execute(
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE tgrelid = %s::regclass AND NOT tgisinternal ORDER BY tgname",
            [tally_sql.STATES],  # moved there by migration 0016
        )
        installed = [definition.replace(" ON public.", " ON ") for _, definition in cursor.fetchall()]
    assert installed == sorted(tally_sql.trigger_statements(tally_sql.STATES))


#: sha256 of the tally SQL that migration 0009 installs (``dlqadmin/tally_sql.py``, its three
#: tallies: ``create_statements()`` keeps ``TALLIES_0009`` whatever is added later).
TALLY_SQL_0009 = "4d6ef37552543e60719c2dabf892aea8b83c36549cac7ee84ed4bb01e51360f4"


def test_the_tally_sql_is_what_migration_0009_installed():
    """A database migrated before a change to ``dlqadmin/tally_sql.py`` keeps its old functions, so
    such a change needs a new migration (CREATE OR REPLACE FUNCTION with ``functions()``)."""
    sql = "\n".join(tally_sql.create_statements() + tally_sql.drop_statements())
    assert hashlib.sha256(sql.encode()).hexdigest() == TALLY_SQL_0009, (
        "dlqadmin/tally_sql.py changed: add a migration that re-creates the tally functions and "
        "triggers for databases already migrated, then update TALLY_SQL_0009"
    )


#: sha256 of the tally SQL that migration 0021 installs and its reverse re-installs.
TALLY_SQL_0021 = "63ace361d485fef0ec3bcf8d23afe545fa145f0bb4ff8cda8808f2b0043a13a4"


def test_the_tally_sql_is_what_migration_0021_installed():
    """Migration 0021 added the fourth tally and re-created the functions; the functions a fresh
    database runs now are those (a tally added since needs a migration of its own, with its own
    frozen list, then a pin like this one)."""
    sql = "\n".join(
        tally_sql.added_statements(tally_sql.TALLIES_0021) + [tally_sql.functions(tally_sql.TALLIES_0009)]
    )
    assert hashlib.sha256(sql.encode()).hexdigest() == TALLY_SQL_0021, (
        "dlqadmin/tally_sql.py changed: add a migration that re-creates the tally functions for "
        "databases already migrated, then update TALLY_SQL_0021 (or pin the new migration's SQL)"
    )
    assert tally_sql.functions() == tally_sql.functions(tally_sql.TALLIES_0021)
