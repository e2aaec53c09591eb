"""Overview: health, per-source backlog, failures chart data, top groups, running jobs."""

import json

import pytest
from django.urls import reverse

from dlqadmin.models import RedriveJob, Source
from tests.views.conftest import HOSTILE, harvested

pytestmark = pytest.mark.django_db


def chart_of(body: str) -> dict:
    raw = body.split('<script id="chart-data" type="application/json">', 1)[1].split("</script>", 1)[0]
    return json.loads(raw)


def test_it_shows_status_counts_sources_groups_and_chart_data(as_user, viewer, store, source):
    store(harvested(minutes_ago=30), harvested(minutes_ago=90), harvested(minutes_ago=3 * 24 * 60))
    Source.objects.filter(pk=source.pk).update(backlog=17)
    body = as_user(viewer).get(reverse("dlq-overview")).content.decode()
    assert '<span class="tile-n">3</span><span class="tile-l">new</span>' in body
    assert "orders-dlq" in body and '<td class="num">17</td>' in body
    assert "order &lt;n&gt; not found" in body
    chart = chart_of(body)
    assert len(chart["24h"]["labels"]) == 24 and len(chart["7d"]["labels"]) == 28
    assert chart["24h"]["series"] == [{"label": "orders-dlq", "data": chart["24h"]["series"][0]["data"]}]
    assert sum(chart["24h"]["series"][0]["data"]) == 2 and sum(chart["7d"]["series"][0]["data"]) == 3
    assert "vendor/chartjs/chart.umd.min.js" in body and "js/overview.js" in body


def test_running_jobs_get_a_live_progress_bar(as_user, viewer):
    job = RedriveJob.objects.create(status="running", total=10, succeeded=4)
    done = RedriveJob.objects.create(status="completed", total=3, succeeded=3)
    body = as_user(viewer).get(reverse("dlq-overview")).content.decode()
    assert f'data-job="{job.pk}"' in body and f'data-job="{done.pk}"' not in body
    assert '<progress class="bar st-running" max="10" value="4"' in body


def test_empty_states_point_at_the_next_step(as_user, admin_user, viewer):
    admin_body = as_user(admin_user).get(reverse("dlq-overview")).content.decode()
    assert "No broker connection yet" in admin_body and reverse("dlq-connection-add") in admin_body
    assert "No redrive is running" in admin_body and "No open error groups" in admin_body
    assert "Ask an admin to add one" in as_user(viewer).get(reverse("dlq-overview")).content.decode()


def test_hostile_source_data_is_escaped_including_inside_the_chart_json(as_user, viewer, store, connection):
    evil = Source.objects.create(connection=connection, name=HOSTILE[:100], mode="queue", address="evil")
    store(harvested(error=HOSTILE), into=evil)
    Source.objects.filter(pk=evil.pk).update(last_error=HOSTILE)
    body = as_user(viewer).get(reverse("dlq-overview")).content.decode()
    assert "<script>alert" not in body and "<img src=x" not in body
    assert chart_of(body)["24h"]["series"][0]["label"] == HOSTILE[:100]
