"""Messages page: filters in the URL, keyset pages, selection, bulk discard/resolve, export."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from dlqadmin.models import AuditEvent, DeadLetter, DeadLetterStatus, Source
from tests.views.conftest import HOSTILE, harvested

pytestmark = pytest.mark.django_db
URL = "/messages/"


def rows_of(response) -> list[int]:
    body = response.content.decode()
    return [int(chunk.split('"', 1)[0]) for chunk in body.split('name="ids" value="')[1:]]


def test_the_table_lists_newest_failures_first_with_the_exact_count(as_user, viewer, store):
    old, new = store(harvested(minutes_ago=60), harvested(minutes_ago=1))
    response = as_user(viewer).get(URL)
    assert response.status_code == 200
    assert rows_of(response) == [new.pk, old.pk]
    assert b"<strong data-total-count>2</strong> messages match" in response.content


def test_the_url_encodes_the_filter_and_every_field_narrows_the_rows(
    as_user, operator, store, source, connection
):
    other = Source.objects.create(
        connection=connection, name="billing-dlq", mode="queue", address="billing.dlq"
    )
    a = store(harvested(payload=b'{"customer": "ada"}', headers={"tenant": "acme"}))[0]
    b = store(
        harvested(
            error="timeout talking to ledger",
            error_class="Timeout",
            reason="expired",
            headers={"tenant": "globex"},
        ),
        into=other,
    )[0]
    DeadLetter.objects.filter(pk=b.pk).update(status=DeadLetterStatus.FAILED)
    client = as_user(operator)
    assert rows_of(client.get(URL, {"source": other.pk})) == [b.pk]
    assert rows_of(client.get(URL, {"source": "orders-dlq"})) == [a.pk]
    assert rows_of(client.get(URL, {"connection": connection.pk})) == [b.pk, a.pk]
    assert rows_of(client.get(URL, {"status": "failed"})) == [b.pk]
    assert rows_of(client.get(URL, {"reason": "expired"})) == [b.pk]
    assert rows_of(client.get(URL, {"error_group": a.error_group_id})) == [a.pk]
    assert rows_of(client.get(URL, {"q": "ledger"})) == [b.pk]
    assert rows_of(client.get(URL, {"q": "ada"})) == [a.pk]
    assert rows_of(client.get(URL, {"header": "tenant:acme"})) == [a.pk]
    assert rows_of(client.get(URL, {"header": "tenant:other"})) == []


def test_a_time_range_from_the_datetime_inputs_is_understood(as_user, operator, store):
    old, new = store(harvested(minutes_ago=3 * 60), harvested(minutes_ago=10))
    client = as_user(operator)
    half_hour_ago = (timezone.now() - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M")
    assert rows_of(client.get(URL, {"since": half_hour_ago})) == [new.pk]
    assert rows_of(client.get(URL, {"until": half_hour_ago, "since": ""})) == [old.pk]


def test_a_bad_filter_answers_400_with_the_reason_per_field(as_user, operator):
    response = as_user(operator).get(URL, {"since": "yesterday-ish", "status": "bogus", "header": "nocolon"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "This filter cannot be applied" in body
    assert "is not an ISO-8601 date/time" in body and "unknown status" in body and "name:value" in body


def test_unknown_query_keys_are_rejected_not_ignored(as_user, operator):
    response = as_user(operator).get(URL, {"colour": "red"})
    assert response.status_code == 400 and b"unknown filter key" in response.content


def test_keyset_pages_walk_every_row_once(as_user, operator, store):
    made = store(*[harvested(minutes_ago=i) for i in range(60)])
    client = as_user(operator)
    seen, response = [], client.get(URL, {"page_size": 25})
    while True:
        seen += rows_of(response)
        body = response.content.decode()
        if 'rel="next"' not in body:
            break
        href = body.split('rel="next"')[0].rsplit('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        response = client.get(href)
    assert sorted(seen) == sorted(m.pk for m in made) and len(seen) == 60


def test_htmx_filter_requests_get_only_the_results_fragment(as_user, operator, store):
    store(harvested())
    response = as_user(operator).get(URL, {"status": "new"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="results")
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and 'id="bulk-form"' in body and 'id="filter-form"' not in body


def test_htmx_filter_requests_push_a_clean_shareable_url(as_user, operator, store):
    store(harvested())
    response = as_user(operator).get(
        URL,
        {"q": "", "status": "new", "header": "", "page_size": "25"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="results",
    )
    assert response["HX-Push-Url"] == "/messages/?status=new&page_size=25"


def test_blank_form_fields_are_ignored_not_rejected(as_user, operator, store):
    letter = store(harvested())[0]
    response = as_user(operator).get(URL, {"q": "", "header": "", "since": "", "reason": "", "source": ""})
    assert response.status_code == 200 and rows_of(response) == [letter.pk]


def test_a_bulk_action_from_the_message_page_returns_there(as_user, operator, store):
    letter = store(harvested())[0]
    detail = reverse("dlq-message", args=[letter.pk])
    client = as_user(operator)
    response = client.post(
        reverse("dlq-messages-bulk"), {"action": "resolve", "ids": [letter.pk], "next": detail}
    )
    assert response["Location"] == detail
    evil = client.post(
        reverse("dlq-messages-bulk"),
        {"action": "discard", "ids": [letter.pk], "next": "https://evil.example/"},
    )
    assert evil["Location"] == "/messages/"


def test_hostile_payloads_headers_and_errors_render_as_text(as_user, operator, store):
    store(harvested(payload=HOSTILE.encode(), headers={"x": HOSTILE}, error=HOSTILE, error_class=HOSTILE))
    body = as_user(operator).get(URL).content.decode()
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(&quot;pwn&quot;)&lt;/script&gt;" in body


def test_a_viewer_sees_export_but_no_redrive_discard_or_resolve(as_user, viewer, store):
    store(harvested())
    body = as_user(viewer).get(URL).content.decode()
    assert "Export JSON lines" in body
    assert "Redrive…" not in body and ">Discard<" not in body and ">Resolve<" not in body


def test_an_operator_is_offered_every_bulk_action(as_user, operator, store):
    store(harvested())
    body = as_user(operator).get(URL).content.decode()
    assert "Redrive…" in body and ">Discard<" in body and ">Resolve<" in body and "Export JSON lines" in body


def test_select_all_carries_the_filter_pinned_to_the_rows_on_screen(as_user, operator, store):
    first = store(harvested())[0]
    body = as_user(operator).get(URL, {"status": "new"}).content.decode()
    hidden = body.split('name="filter" value="', 1)[1].split('"', 1)[0]
    assert "status=new" in hidden and f"max_id={first.pk}" in hidden
    assert "Select all 1 matching this filter" in body


def test_bulk_discard_of_ticked_rows(as_user, operator, store):
    a, b = store(harvested(), harvested())
    response = as_user(operator).post(
        reverse("dlq-messages-bulk"), {"action": "discard", "ids": [a.pk], "return": "status=new"}
    )
    assert response.status_code == 302 and response["Location"] == "/messages/?status=new"
    assert DeadLetter.objects.get(pk=a.pk).status == DeadLetterStatus.DISCARDED
    assert DeadLetter.objects.get(pk=b.pk).status == DeadLetterStatus.NEW
    assert AuditEvent.objects.filter(action__startswith="messages.discard", count=1).exists()


def test_bulk_resolve_of_everything_matching_excludes_rows_that_arrived_later(as_user, operator, store):
    shown = store(harvested(), harvested())
    client = as_user(operator)
    body = client.get(URL, {"status": "new"}).content.decode()
    pinned = body.split('name="filter" value="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    late = store(harvested())[0]
    response = client.post(
        reverse("dlq-messages-bulk"),
        {"action": "resolve", "select_all": "1", "filter": pinned, "return": "status=new"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200 and b"Resolved 2 messages" in response.content
    assert {m.status for m in DeadLetter.objects.filter(pk__in=[m.pk for m in shown])} == {"resolved"}
    assert DeadLetter.objects.get(pk=late.pk).status == DeadLetterStatus.NEW
    assert b'id="bulk-form"' in response.content and b"<html" not in response.content


def test_a_bulk_action_without_a_selection_says_so(as_user, operator, store):
    store(harvested())
    client = as_user(operator)
    response = client.post(reverse("dlq-messages-bulk"), {"action": "discard"}, follow=True)
    assert b"select at least one message" in response.content


def test_an_unknown_bulk_action_is_a_bad_request(as_user, operator):
    assert (
        as_user(operator).post(reverse("dlq-messages-bulk"), {"action": "explode", "ids": [1]}).status_code
        == 400
    )


@pytest.mark.parametrize("action", ["discard", "resolve"])
def test_a_viewer_cannot_discard_or_resolve(as_user, viewer, store, action):
    letter = store(harvested())[0]
    response = as_user(viewer).post(reverse("dlq-messages-bulk"), {"action": action, "ids": [letter.pk]})
    assert response.status_code == 403
    assert DeadLetter.objects.get(pk=letter.pk).status == DeadLetterStatus.NEW


def test_export_streams_lossless_json_lines_of_the_ticked_rows(as_user, viewer, store):
    a, _b = store(harvested(payload=b"\x00\xff binary"), harvested())
    response = as_user(viewer).post(reverse("dlq-messages-export"), {"ids": [a.pk]})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert response["Content-Disposition"].startswith('attachment; filename="dead-letters-')
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["id"] == a.pk and record["payload_b64"] == "AP8gYmluYXJ5"
    assert AuditEvent.objects.filter(action="messages.export", count=1).exists()


def test_export_of_everything_matching_a_filter(as_user, operator, store):
    store(harvested(reason="expired"), harvested(reason="rejected"), harvested(reason="expired"))
    response = as_user(operator).post(
        reverse("dlq-messages-export"), {"select_all": "1", "filter": "reason=expired"}
    )
    records = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [r["reason"] for r in records] == ["expired", "expired"]


def test_export_without_a_selection_is_a_bad_request(as_user, operator):
    assert as_user(operator).post(reverse("dlq-messages-export"), {}).status_code == 400


def test_empty_states_say_what_to_do_next(as_user, operator, store):
    client = as_user(operator)
    assert b"No dead letters stored yet" in client.get(URL).content
    store(harvested())
    assert b"Nothing matches this filter" in client.get(URL, {"q": "no-such-text"}).content


def test_the_live_banner_watches_only_the_filtered_sources(as_user, operator, store, source):
    store(harvested())
    body = as_user(operator).get(URL, {"source": source.name}).content.decode()
    assert f'data-watch-sources="{source.pk}"' in body
    assert 'data-watch-sources=""' in as_user(operator).get(URL).content.decode()
