"""The ``dlq`` template tags write the markup the ``_time.html`` / ``_status.html`` includes used
to, and the per-row helpers build the same links ``{% url %}`` does."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone as dj_timezone

from dlqadmin.templatetags.dlq import reltime, select_options, status_badge
from dlqadmin.views.common import Option, url_for_pk
from tests.views.conftest import HOSTILE

#: the includes as they were, to hold the tags to the same output
OLD_TIME = (
    "{% if t %}<time datetime=\"{{ t|date:'c' }}\" title=\"{{ t|date:'Y-m-d H:i:s' }} UTC\" data-rel>"
    '{{ t|timesince }} ago</time>{% else %}<span class="muted">never</span>{% endif %}'
)
OLD_STATUS = '<span class="badge st-{{ s }}">{{ label|default:s }}</span>'


@pytest.mark.parametrize(
    "when",
    [
        None,
        dj_timezone.now() - timedelta(minutes=3, seconds=5),
        dj_timezone.now() - timedelta(days=40, hours=2),
        datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
        datetime(2026, 1, 2, 23, 30, tzinfo=timezone(timedelta(hours=-5))),  # shown in UTC
    ],
)
def test_reltime_writes_what_the_time_include_wrote(when):
    assert str(reltime(when)) == Template(OLD_TIME).render(Context({"t": when}))


@pytest.mark.parametrize(
    ("status", "label"), [("new", None), ("failed", "Failed"), ("x", ""), (HOSTILE, HOSTILE)]
)
def test_status_badge_writes_what_the_status_include_wrote(status, label):
    context = {"s": status} if label is None else {"s": status, "label": label}
    expected = Template(OLD_STATUS).render(Context(context))
    assert str(status_badge(status, label)) == expected
    assert "<script>" not in expected


def test_the_status_include_still_takes_a_label_from_the_page():
    page = Template('{% include "dlqadmin/_status.html" with s="done" label="Done" %}')
    assert page.render(Context({})).strip() == '<span class="badge st-done">Done</span>'


def test_select_options_escape_labels_and_mark_the_chosen_one():
    html = str(select_options([Option("1", HOSTILE, True), Option("2", "plain", False)]))
    assert html.startswith('<option value="1" selected>&lt;script&gt;alert(&quot;pwn&quot;)')
    assert html.endswith('<option value="2" >plain</option>')
    assert "<script>" not in html


def test_url_for_pk_builds_the_reversed_url():
    detail = url_for_pk("dlq-message")
    for pk in (1, 42, 918273645546372, 10**20):
        assert detail(pk) == reverse("dlq-message", args=[pk])
