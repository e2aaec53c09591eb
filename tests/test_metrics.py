"""/metrics: counters that never go down (a retention purge included), gauges that match the
table, and a scrape that never reads the dead-letter or attempt tables."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dlqadmin.models import DeadLetter
from dlqadmin.services.maintenance import retention_purge
from dlqadmin.services.redrive.jobs import redrive_job_create
from dlqadmin.services.redrive.worker import redrive_job_step

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(client) -> dict[str, float]:
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    out = {}
    for line in response.content.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_counters_survive_a_retention_purge_and_gauges_follow_the_table(client, operator, harvested):
    source, _top = harvested(4)
    label = f'source="{source.name}"'
    redriven = list(source.dead_letters.order_by("id").values_list("id", flat=True)[:2])
    job = redrive_job_create(actor=operator, ids=redriven)
    while redrive_job_step(job_id=job.pk).more:
        pass
    # an operator resolves what was redriven plus one more, through the API
    client.force_login(operator)
    resolved = [*redriven, source.dead_letters.exclude(pk__in=redriven).order_by("id").first().pk]
    answer = client.post("/api/v1/messages/resolve/", {"ids": resolved}, content_type="application/json")
    assert answer.status_code == 200, answer.content

    before = scrape(client)
    kind = f'kind="rabbitmq",{label}'
    assert before[f"dlqadmin_dead_letters_harvested_total{{{kind}}}"] == 4
    assert before[f"dlqadmin_messages_redriven_total{{{label}}}"] == 2
    assert before[f"dlqadmin_messages_redrive_failed_total{{{label}}}"] == 0
    assert before[f'dlqadmin_dead_letters{{{label},status="resolved"}}'] == 3
    assert before[f'dlqadmin_dead_letters{{{label},status="new"}}'] == 1
    assert before[f"dlqadmin_dead_letters_purged_total{{{label}}}"] == 0

    # the real purge, as beat runs it, a year from now: the three resolved rows go
    assert retention_purge(days=30, now=timezone.now() + timedelta(days=365)) == 3
    assert DeadLetter.objects.filter(source=source).count() == 1

    with CaptureQueriesContext(connection) as queries:
        after = scrape(client)
    assert after[f"dlqadmin_dead_letters_harvested_total{{{kind}}}"] == 4
    assert after[f"dlqadmin_messages_redriven_total{{{label}}}"] == 2  # not 0: counters never go down
    assert after[f"dlqadmin_dead_letters_purged_total{{{label}}}"] == 3
    assert after[f'dlqadmin_dead_letters{{{label},status="resolved"}}'] == 0
    assert after[f'dlqadmin_dead_letters{{{label},status="new"}}'] == 1
    # gauges equal the table, status by status
    for status in ("new", "resolved", "redriven", "failed"):
        stored = DeadLetter.objects.filter(source=source, status=status).count()
        assert after.get(f'dlqadmin_dead_letters{{{label},status="{status}"}}', 0) == stored
    # and the scrape reads neither big table
    read = " ".join(q["sql"] for q in queries.captured_queries)
    assert "dlqadmin_deadletter" not in read and "dlqadmin_redriveattempt" not in read, read


def test_folding_the_counters_keeps_every_total():
    from dlqadmin.models import SourceCounter
    from dlqadmin.services.counters import counter_totals, counters_add, counters_fold

    for n in (1, 2, 3):
        counters_add(name="redriven", by_source={7: n, 8: 10 * n})
    counters_add(name="purged", by_source={7: 4, 8: 0})
    before = counter_totals()
    assert before == {(7, "redriven"): 6, (8, "redriven"): 60, (7, "purged"): 4}
    counters_fold()
    counters_add(name="redriven", by_source={7: 1})
    counters_fold()
    assert counter_totals() == {**before, (7, "redriven"): 7}
    assert not SourceCounter.objects.filter(delta=True).exists()
    assert SourceCounter.objects.count() == 3  # one base row per (source, counter)
