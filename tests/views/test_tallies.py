"""Dashboard tallies (issue 8): on PostgreSQL the overview, connections and error-group pages read
per-status, per-hour and per-day totals that triggers keep, never aggregating the dead-letter
table. The totals must equal what aggregating the table says, after every kind of write."""

import hashlib
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dlqadmin import selectors_dashboard, tally_sql
from dlqadmin.models import DeadLetter, ErrorGroup, Source
from tests.views.conftest import harvested

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="tallies are kept on PostgreSQL only"),
]


def everything(*, user=None) -> dict:
    """What the dashboard shows, read through the selectors."""
    now = timezone.now()
    groups = list(ErrorGroup.objects.values_list("pk", flat=True))
    return {
        "status": selectors_dashboard.status_counts(user=user),
        "sources": [
            (row.connection.pk, s.source.pk, s.open, s.last_24h)
            for row in selectors_dashboard.connections_overview(user=user, now=now)
            for s in row.sources
        ],
        "24h": selectors_dashboard.failures_timeline(hours=24, bucket_hours=1, user=user, now=now),
        "7d": selectors_dashboard.failures_timeline(hours=7 * 24, bucket_hours=6, user=user, now=now),
        "sparks": selectors_dashboard.group_sparklines(groups, days=14, now=now),
    }


def from_the_table(monkeypatch, **kw) -> dict:
    with monkeypatch.context() as patch:
        patch.setattr(selectors_dashboard, "tallied", lambda: False)
        return everything(**kw)


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


def test_the_tallies_match_the_table_after_inserts_updates_and_deletes(busy, store, monkeypatch, operator):
    orders, billing = busy
    assert everything() == from_the_table(monkeypatch)
    DeadLetter.objects.filter(source=orders, pk__in=DeadLetter.objects.values("pk")[:17]).update(
        status="resolved"
    )
    DeadLetter.objects.filter(source=billing).update(status="failed")
    DeadLetter.objects.filter(pk__in=DeadLetter.objects.values("pk")[20:25]).update(error_group=None)
    moved = DeadLetter.objects.order_by("pk").values("pk")[30:33]
    DeadLetter.objects.filter(pk__in=moved).update(failed_at=timezone.now() - timedelta(days=3, minutes=7))
    DeadLetter.objects.filter(pk__in=DeadLetter.objects.values("pk")[40:46]).delete()
    store(harvested(minutes_ago=0.5), harvested(minutes_ago=24 * 60 - 1), into=billing)
    assert everything() == from_the_table(monkeypatch)
    assert everything(user=operator) == from_the_table(monkeypatch, user=operator)


def test_compacting_the_deltas_keeps_every_total(busy, store, monkeypatch):
    _, billing = busy
    DeadLetter.objects.filter(source=billing).update(status="redriven")
    before = everything()
    with connection.cursor() as cursor:
        cursor.execute("SELECT dlqadmin_tally_compact()")
        cursor.execute("SELECT count(*) FROM dlqadmin_statustally WHERE delta")
        assert cursor.fetchone()[0] == 0
    assert everything() == before == from_the_table(monkeypatch)
    for i in range(150):  # enough statements for the triggers' own compaction to run too
        DeadLetter.objects.filter(pk=DeadLetter.objects.order_by("pk")[i % 90].pk).update(
            status="resolved" if i % 2 else "new"
        )
    assert everything() == from_the_table(monkeypatch)


def test_a_restricted_source_is_left_out_of_the_tallied_figures(as_user, operator, monkeypatch):
    from tests.support.access_world import build

    world = build()
    seen = everything(user=operator)
    assert seen == from_the_table(monkeypatch, user=operator)
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


def test_the_group_page_sparkline_comes_from_the_tallies(as_user, operator, busy):
    group = ErrorGroup.objects.order_by("-count").first()
    with CaptureQueriesContext(connection) as captured:
        assert as_user(operator).get(reverse("dlq-group", args=[group.pk])).status_code == 200
    assert any("dlqadmin_groupdaytally" in q["sql"] for q in captured.captured_queries)


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
            [tally_sql.LETTERS],
        )
        installed = [definition.replace(" ON public.", " ON ") for _, definition in cursor.fetchall()]
    assert installed == sorted(s for s in tally_sql.create_statements() if s.startswith("CREATE TRIGGER"))


#: sha256 of the tally SQL that migration 0009 installs (``dlqadmin/tally_sql.py``).
TALLY_SQL_0009 = "4d6ef37552543e60719c2dabf892aea8b83c36549cac7ee84ed4bb01e51360f4"


def test_the_tally_sql_is_what_migration_0009_installed():
    """A database migrated before a change to ``dlqadmin/tally_sql.py`` keeps its old functions, so
    such a change needs a new migration (CREATE OR REPLACE FUNCTION with ``functions()``)."""
    sql = "\n".join(tally_sql.create_statements() + tally_sql.drop_statements())
    assert hashlib.sha256(sql.encode()).hexdigest() == TALLY_SQL_0009, (
        "dlqadmin/tally_sql.py changed: add a migration that re-creates the tally functions and "
        "triggers for databases already migrated, then update TALLY_SQL_0009"
    )
