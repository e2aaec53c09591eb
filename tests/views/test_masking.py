"""Masking in the dashboard: a viewer gets masked payload, headers and error text on every page
(detail, table preview, raw download, group pages, export) and cannot find a masked value by
searching; an operator sees everything."""

import base64
import json

import pytest
from django.urls import reverse

from brokers import headers as header_codec
from dlqadmin.models import DeadLetter
from dlqadmin.services.dead_letters import dead_letter_revise
from tests.support.access_world import CARD, EMAIL, PAYLOAD, TOKEN, assert_no_secrets, build

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return build()


def listed(response) -> list[int]:
    body = response.content.decode()
    return [int(chunk.split('"', 1)[0]) for chunk in body.split('name="ids" value="')[1:]]


def records(response) -> list[dict]:
    return [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]


def test_the_detail_page_masks_payload_headers_error_and_stack_trace(world, as_user, viewer, operator):
    url = reverse("dlq-message", args=[world.letter.pk])
    body = as_user(viewer).get(url).content.decode()
    assert_no_secrets(body)
    assert "&quot;***&quot;" in body  # customer.email in the JSON tree
    assert "charge failed for &lt;email&gt; with card [card]" in body  # error text, by the regexes
    assert "PaymentDeclined: charge failed for &lt;email&gt;" in body  # stack trace
    assert "· masked" in body
    full = as_user(operator).get(url).content.decode()
    assert EMAIL in full and CARD in full and TOKEN in full and "· masked" not in full


def test_the_table_preview_and_error_column_are_masked(world, as_user, viewer, operator):
    body = as_user(viewer).get(reverse("dlq-messages")).content.decode()
    assert listed(as_user(viewer).get(reverse("dlq-messages"))) == [world.letter.pk, world.hidden.pk][:1]
    assert_no_secrets(body)
    assert "&lt;email&gt;" in body and "&quot;***&quot;" in body
    full = as_user(operator).get(reverse("dlq-messages")).content.decode()
    assert EMAIL in full and CARD in full


def test_a_payload_too_large_to_mask_in_the_table_is_not_previewed(world, as_user, viewer, monkeypatch):
    from dlqadmin.views import messages

    monkeypatch.setattr(messages, "MASKED_PREVIEW_LIMIT", 10)
    body = as_user(viewer).get(reverse("dlq-messages")).content.decode()
    assert messages.MASKED_PREVIEW_NOTE in body
    assert_no_secrets(body)


def test_the_raw_download_and_revision_downloads_are_masked(world, as_user, viewer, operator):
    url = reverse("dlq-message-payload", args=[world.letter.pk])
    masked = b"".join([as_user(viewer).get(url).content])
    assert_no_secrets(masked)
    assert json.loads(masked)["customer"] == {"email": "***", "name": "Ann"}
    assert as_user(operator).get(url).content == PAYLOAD.encode()
    revision = dead_letter_revise(
        actor=operator, dead_letter=world.letter, payload=PAYLOAD.replace("7", "8").encode()
    )
    response = as_user(viewer).get(url, {"revision": revision.pk})
    assert response.status_code == 200 and json.loads(response.content)["order"] == 8
    assert_no_secrets(response.content)


def test_the_group_pages_mask_the_pattern_and_sample(world, as_user, viewer, operator):
    group_url = reverse("dlq-group", args=[world.letter.error_group_id])
    for url in (reverse("dlq-groups"), group_url, reverse("dlq-overview")):
        assert_no_secrets(as_user(viewer).get(url).content)
    assert EMAIL in as_user(operator).get(group_url).content.decode()


def test_a_dashboard_export_is_masked_for_a_viewer_and_lossless_for_an_operator(
    world, as_user, viewer, operator
):
    selection = {"ids": [world.letter.pk]}
    (record,) = records(as_user(viewer).post(reverse("dlq-messages-export"), selection))
    assert record["masked"] is True
    assert_no_secrets(json.dumps(record))
    assert_no_secrets(base64.b64decode(record["payload_b64"]))
    assert header_codec.get(record["headers"], "Authorization") == "***"
    assert record["error_message"] == "charge failed for <email> with card [card]"
    (record,) = records(as_user(operator).post(reverse("dlq-messages-export"), selection))
    assert record["masked"] is False and base64.b64decode(record["payload_b64"]) == PAYLOAD.encode()
    assert record["headers"] == DeadLetter.objects.get(pk=world.letter.pk).headers


@pytest.mark.parametrize(
    "query",
    [
        {"q": EMAIL},  # in the payload and the error text
        {"q": CARD},
        {"q": "ann@"},  # a prefix is a probe too
        {"header": f"Authorization:Bearer {TOKEN}"},  # a masked header's value
    ],
)
def test_a_viewer_cannot_find_a_masked_value_by_searching(world, as_user, viewer, operator, query):
    assert listed(as_user(viewer).get(reverse("dlq-messages"), query)) == []
    assert listed(as_user(operator).get(reverse("dlq-messages"), query)) == [world.letter.pk]


def test_a_viewer_still_searches_what_is_not_masked(world, as_user, viewer):
    for query in ({"q": "PaymentDeclined"}, {"header": "tenant:acme"}):
        assert listed(as_user(viewer).get(reverse("dlq-messages"), query)) == [world.letter.pk]


def test_search_on_sources_without_rules_matches_payload_and_error_for_a_viewer(world, as_user, viewer):
    from dlqadmin.models import MaskingRule

    MaskingRule.objects.all().delete()
    assert listed(as_user(viewer).get(reverse("dlq-messages"), {"q": EMAIL})) == [world.letter.pk]


def test_the_edit_form_is_only_for_roles_that_see_unmasked_content(world, as_user, viewer, operator):
    url = reverse("dlq-message-edit", args=[world.letter.pk])
    assert as_user(viewer).get(url).status_code == 403
    assert as_user(viewer).post(url, {"step": "save", "payload": "{}"}).status_code == 403
    body = as_user(operator).get(url).content.decode()
    assert EMAIL in body  # the operator edits the original, not a masked copy


def test_read_notes_are_masked_like_error_text(world, as_user, viewer, operator):
    """A note may quote a header value ("could not read ...: x-retry-count '<value>' ..."): a
    viewer sees it through the same rules as the error text, on the page and in the API."""
    note = f"could not read retry_count: x-retry-count '{EMAIL}' is not an integer; 0 is stored"
    DeadLetter.objects.filter(pk=world.letter.pk).update(read_notes=[note])
    url = reverse("dlq-message", args=[world.letter.pk])
    body = as_user(viewer).get(url).content.decode()
    assert "Could not read everything" in body and "x-retry-count &#x27;&lt;email&gt;&#x27;" in body
    assert_no_secrets(body)
    api = as_user(viewer).get(f"/api/v1/messages/{world.letter.pk}/").json()
    assert api["read_notes"] == [note.replace(EMAIL, "<email>")]
    assert EMAIL in as_user(operator).get(url).content.decode()
