"""Every dashboard page answers hostile query strings and form data with the page, a form error
or a 400, never a 500: the same bad input schemathesis finds in the API (dates PostgreSQL
cannot hold, numbers beyond bigint, Unicode digits int() refuses, NUL bytes, forged cursors)."""

from urllib.parse import quote

import pytest
from django.urls import reverse

from dlqadmin.models import DeadLetterRevision, RedriveAttempt, RedriveJob
from tests.views.conftest import harvested

pytestmark = pytest.mark.django_db

BIG = "99999999999999999999"
SUPERSCRIPT_TWO = quote("\u00b2")  # str.isdigit() says yes, int() says no
#: query strings the filter language must refuse with a message (field, text in the message)
BAD_FILTERS = [
    ("since=0001-01-01T00:00:00%2B01:00", "since", "is out of range (years 1 to 9999 in UTC)"),
    ("until=9999-12-31T23:59:59-01:00", "until", "is out of range (years 1 to 9999 in UTC)"),
    ("since=2026-01-01T00:00:00%2B25:00", "since", "is not an ISO-8601 date/time"),
    ("since=%00", "since", "is not an ISO-8601 date/time"),
    (f"error_group={BIG}", "error_group", "an integer id from 1 to 9223372036854775807"),
    (f"error_group={SUPERSCRIPT_TWO}", "error_group", "an integer id from 1 to"),
    (f"max_id={BIG}", "max_id", "an integer from -9223372036854775807 to"),
    ("header=x%00:y", "filter", "may not contain NUL"),
    ("q=%00", "filter", "may not contain NUL"),
    ("cursor=MDAwMS0wMS0wMVQwMDowMDowMCswMTowMHwx", "cursor", "invalid cursor"),  # 0001-01-01T00:00+01:00
]
#: accepted as a filter (a valid value, or ignored where the page has no such parameter)
ODD_BUT_VALID = [
    "since=0399-08-15T00:04:02.73%2B20:51",  # beyond PostgreSQL's +-15:59: read in UTC
    "header=x:--1",
    f"header=x:{SUPERSCRIPT_TWO}",
    f"source={SUPERSCRIPT_TWO}",
    f"source={BIG}",
    f"connection={BIG}",
    f"page={BIG}",
    f"page={SUPERSCRIPT_TWO}",
    "page=-1",
    "page=%00",
    f"page_size={BIG}",
    "status=%00",
    "action=%00",
    "actor=%00",
    "part=%00",
    f"revision={SUPERSCRIPT_TWO}",
    f"revision={BIG}",
    "select_all=1&filter=since%3D0001-01-01T00%3A00%3A00%252B01%3A00",
]


@pytest.fixture
def pages(store, source, connection):
    letter = store(harvested())[0]
    DeadLetterRevision.objects.create(dead_letter=letter, payload=b"{}")
    job = RedriveJob.objects.create(total=1, status="running")
    RedriveAttempt.objects.create(job=job, dead_letter=letter, status="failed", error="x")
    filtered = [
        reverse("dlq-messages"),
        reverse("dlq-messages-count"),
        reverse("dlq-group", args=[letter.error_group_id]),
        reverse("dlq-redrive"),
    ]
    others = [
        reverse("dlq-overview"),
        reverse("dlq-message", args=[letter.pk]),
        reverse("dlq-message-payload", args=[letter.pk]),
        reverse("dlq-message-edit", args=[letter.pk]),
        reverse("dlq-groups"),
        reverse("dlq-jobs"),
        reverse("dlq-job", args=[job.pk]),
        reverse("dlq-job-progress", args=[job.pk]),
        reverse("dlq-connections"),
        reverse("dlq-connection-add"),
        reverse("dlq-connection-edit", args=[connection.pk]),
        reverse("dlq-source-edit", args=[source.pk]),
        reverse("dlq-audit"),
    ]
    return filtered, others


@pytest.fixture
def admin_client(as_user, admin_user):
    return as_user(admin_user)


def test_no_page_fails_on_a_hostile_query_string(pages, admin_client):
    filtered, others = pages
    for url in filtered + others:
        for query, *_ in BAD_FILTERS:
            response = admin_client.get(f"{url}?{query}")
            assert response.status_code in (200, 400), (url, query, response.status_code)
        for query in ODD_BUT_VALID:
            response = admin_client.get(f"{url}?{query}")
            assert response.status_code in (200, 400, 404), (url, query, response.status_code)


@pytest.mark.parametrize(("query", "field", "message"), BAD_FILTERS)
def test_a_bad_filter_is_a_400_page_with_the_reason(pages, admin_client, query, field, message):
    filtered, _ = pages
    # the messages page, and a group's page (which sets error_group itself)
    for url in filtered[0], *([filtered[2]] if field != "error_group" else []):
        response = admin_client.get(f"{url}?{query}")
        assert response.status_code == 400, url
        assert message in response.content.decode().replace("&#x27;", "'"), url


@pytest.mark.parametrize(
    "data",
    [
        {"action": "resolve", "ids": [BIG]},
        {"action": "resolve", "ids": ["\u00b2"]},
        {"action": "resolve", "ids": ["1\x00"]},
        {"action": "resolve", "select_all": "1", "filter": "since=0001-01-01T00:00:00%2B01:00"},
        {"action": "resolve", "select_all": "1", "filter": "header=x:--1&since=0399-08-15T00:04:02%2B20:51"},
        {"action": "resolve", "select_all": "1", "filter": f"error_group={BIG}"},
    ],
)
def test_bulk_export_and_redrive_forms_answer_hostile_selections(pages, admin_client, data):
    for name in ("dlq-messages-bulk", "dlq-messages-export", "dlq-redrive"):
        response = admin_client.post(reverse(name), data)
        assert response.status_code in (200, 302, 400), (name, data, response.status_code)


def test_the_audit_filter_refuses_nul_with_a_form_error(pages, admin_client):
    response = admin_client.get(f"{reverse('dlq-audit')}?action=redrive%00")
    assert response.status_code == 400
    assert "Null characters are not allowed." in response.content.decode()


#: what a form field may receive that PostgreSQL, int() or the JSON columns would refuse
HOSTILE_VALUES = [
    "a\x00b",
    BIG * 2,
    "\u00b2",
    "1e999",
    '{"a": "\\u0000"}',
    '[["x\\u0000", {"t": "str", "v": "y"}]]',
]


def test_no_form_fails_on_hostile_field_values(pages, admin_client, source, connection, store):
    letter = store(harvested())[0]
    job = RedriveJob.objects.create(total=1, status="running")
    forms = [
        (reverse("dlq-connection-add"), {"name": "n", "kind": "rabbitmq", "url": "amqp://127.0.0.1/"}),
        (
            reverse("dlq-source-edit", args=[source.pk]),
            {"name": "s", "mode": "queue", "address": "q", "max_redrives": "3"},
        ),
        (
            reverse("dlq-source-add", args=[connection.pk]),
            {"prefix": "m", "m-name": "s2", "m-mode": "queue", "m-address": "q2", "m-max_redrives": "3"},
        ),
        (reverse("dlq-group-status", args=[letter.error_group_id]), {"status": "resolved"}),
        (
            reverse("dlq-message-edit", args=[letter.pk]),
            {"step": "save", "payload_encoding": "text", "payload": "{}", "headers": "[]", "reviewed": "x"},
        ),
        (reverse("dlq-redrive"), {"confirm": "1", "ids": [letter.pk], "batch_size": "10", "topic": "t"}),
        (reverse("dlq-messages-bulk"), {"action": "resolve", "ids": [letter.pk]}),
        (reverse("dlq-job-control", args=[job.pk, "pause"]), {}),
    ]
    extra_fields = ["options_json", "headers", "partition", "velocity", "extra", "filter", "url", "name"]
    for url, base in forms:
        for field in [*base, *extra_fields]:
            for value in HOSTILE_VALUES:
                response = admin_client.post(url, {**base, field: value})
                assert response.status_code in (200, 302, 400, 404, 409), (url, field, value)
