"""Message detail (payload views, headers, origin, history), raw download, edit and redrive."""

import json
from decimal import Decimal

import pytest
from django.urls import reverse

from brokers import headers as header_codec
from dlqadmin.models import DeadLetter, DeadLetterRevision, RedriveAttempt, RedriveJob
from tests.views.conftest import HOSTILE, harvested

pytestmark = pytest.mark.django_db


def detail(client, letter):
    response = client.get(reverse("dlq-message", args=[letter.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_a_json_payload_is_shown_as_a_collapsible_tree_text_and_hex(as_user, viewer, store):
    letter = store(harvested(payload=b'{"order": 42, "lines": [{"sku": "A-1"}], "paid": true}'))[0]
    body = detail(as_user(viewer), letter)
    assert 'id="view-json"' in body and '<details class="j-node"' in body
    assert '<span class="j-key">&quot;sku&quot;</span>' in body and '<span class="j-num">42</span>' in body
    assert 'id="view-text"' in body and 'id="view-hex"' in body
    assert "00000000  7b 22 6f 72" in body
    assert reverse("dlq-message-payload", args=[letter.pk]) in body


def test_headers_are_listed_with_their_wire_types(as_user, viewer, store):
    headers = header_codec.encode_mapping(
        {"tenant": "acme", "x-retry-count": 2, "amount": Decimal("9.50"), "raw": b"\xff\x00", "nothing": None}
    )
    letter = store(harvested(headers=headers))[0]
    body = detail(as_user(viewer), letter)
    table = body.split('class="table headers"')[1]
    for name, kind, text in [
        ("tenant", "str", "acme"),
        ("x-retry-count", "int", "2"),
        ("amount", "decimal", "9.50"),
    ]:
        assert f'<td class="mono">{name}</td><td><span class="type">{kind}</span></td>' in table
        assert text in table
    assert "0xff00" in table and '<span class="type">void</span>' in table


def test_error_details_origin_and_stack_trace_are_shown(as_user, viewer, store):
    letter = store(harvested(stacktrace="Traceback:\n  File app.py, line 3\nOrderNotFound"))[0]
    body = detail(as_user(viewer), letter)
    assert "OrderNotFound" in body and "order 42 not found" in body and "rejected" in body
    assert "Stack trace" in body and "File app.py, line 3" in body
    origin = body.split('id="origin-h"')[1]
    assert "Exchange" in origin and "orders" in origin and "order.created" in origin and "orders.q" in origin


def test_a_hostile_payload_header_and_error_stay_inert_text(as_user, operator, store):
    letter = store(
        harvested(
            payload=json.dumps({"html": HOSTILE, HOSTILE: 1}).encode(),
            headers={HOSTILE: HOSTILE},
            error=HOSTILE,
            error_class=HOSTILE,
            stacktrace=HOSTILE,
        )
    )[0]
    body = detail(as_user(operator), letter)
    assert "<script>alert" not in body and "<img src=x" not in body and "onerror=alert(1)>" not in body
    assert body.count("&lt;script&gt;") >= 5


def test_a_binary_non_utf8_payload_defaults_to_hex_and_escapes_bytes_in_text(as_user, viewer, store):
    letter = store(harvested(payload=b"\x00\x01\xff\xfeabc\x80", content_type=""))[0]
    body = detail(as_user(viewer), letter)
    assert "not valid UTF-8" in body
    assert (
        'id="view-hex" aria-labelledby="tab-hex" >' in body
        or 'id="view-hex" aria-labelledby="tab-hex">' in body
    )
    assert "\\x00\\x01\\xff\\xfeabc\\x80" in body
    assert "00000000  00 01 ff fe 61 62 63 80" in body
    assert 'id="view-json"' not in body


def test_deeply_nested_json_renders_without_crashing(as_user, viewer, store):
    deep = b"[" * 10_000 + b"]" * 10_000
    wide = b'{"k": ' + b"[" * 100 + b"1" + b"]" * 100 + b"}"
    a, b = store(harvested(payload=deep), harvested(payload=wide))
    deep_body = detail(as_user(viewer), a)
    assert 'id="view-json"' not in deep_body and "[[[[" in deep_body
    assert "(not expanded)" in detail(as_user(viewer), b)


def test_a_huge_header_set_is_cut_with_a_note(as_user, viewer, store):
    letter = store(harvested(headers=[[f"h{i}", {"t": "str", "v": "x"}] for i in range(1200)]))[0]
    body = detail(as_user(viewer), letter)
    assert "(1200)" in body and "700 more headers not shown" in body


def test_the_raw_download_is_byte_identical_and_never_inline(as_user, viewer, store):
    payload = b"\x00<script>alert(1)</script>\xff"
    letter = store(harvested(payload=payload))[0]
    response = as_user(viewer).get(reverse("dlq-message-payload", args=[letter.pk]))
    assert response.status_code == 200 and response.content == payload
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == f'attachment; filename="dead-letter-{letter.pk}.bin"'
    assert response["X-Content-Type-Options"] == "nosniff"


def test_a_revision_payload_downloads_and_a_bad_revision_is_404(as_user, viewer, store):
    letter = store(harvested())[0]
    revision = DeadLetterRevision.objects.create(dead_letter=letter, payload=b"edited")
    url = reverse("dlq-message-payload", args=[letter.pk])
    response = as_user(viewer).get(url, {"revision": revision.pk})
    assert response.content == b"edited" and f"-rev{revision.pk}.bin" in response["Content-Disposition"]
    assert as_user(viewer).get(url, {"revision": "abc"}).status_code == 404
    assert as_user(viewer).get(url, {"revision": "999999"}).status_code == 404


def test_history_shows_harvest_revisions_and_each_redrive_attempt_with_its_outcome(as_user, operator, store):
    letter = store(harvested())[0]
    revision = DeadLetterRevision.objects.create(dead_letter=letter, payload=b"{}", note="fixed the sku")
    job = RedriveJob.objects.create(total=1, failed=1, status="completed")
    RedriveAttempt.objects.create(
        job=job,
        dead_letter=letter,
        status="failed",
        error="permanent: NOT_FOUND - no queue",
        revision=revision,
    )
    body = detail(as_user(operator), letter)
    history = body.split('id="hist-h"')[1]
    assert "Harvested from orders-dlq" in history
    assert f"revision {revision.pk}" in history and "fixed the sku" in history
    assert f'href="/jobs/{job.pk}/"' in history and "permanent: NOT_FOUND - no queue" in history
    assert "st-failed" in history


def test_a_viewer_sees_no_redrive_edit_discard_or_resolve(as_user, viewer, store):
    letter = store(harvested())[0]
    body = detail(as_user(viewer), letter)
    for label in ("Redrive…", "Edit and redrive", ">Discard<", ">Resolve<"):
        assert label not in body


def test_an_operator_is_offered_every_action(as_user, operator, store):
    letter = store(harvested())[0]
    body = detail(as_user(operator), letter)
    for label in ("Redrive…", "Edit and redrive", ">Discard<", ">Resolve<"):
        assert label in body


def test_a_message_queued_in_a_job_offers_no_actions(as_user, operator, store):
    letter = store(harvested())[0]
    DeadLetter.objects.filter(pk=letter.pk).update(status="queued")
    body = detail(as_user(operator), letter)
    assert "Queued in a redrive job" in body and "Redrive…" not in body and ">Discard<" not in body


def test_unknown_message_is_404(as_user, viewer):
    assert as_user(viewer).get(reverse("dlq-message", args=[999999])).status_code == 404


# ---- edit and redrive -------------------------------------------------------------------


def edit_url(letter):
    return reverse("dlq-message-edit", args=[letter.pk])


def test_the_edit_form_starts_from_pretty_json_and_typed_headers(as_user, operator, store):
    letter = store(harvested(payload=b'{"order":42}'))[0]
    body = as_user(operator).get(edit_url(letter)).content.decode()
    assert "{\n  &quot;order&quot;: 42\n}" in body
    assert "[&quot;tenant&quot;, {&quot;t&quot;: &quot;str&quot;, &quot;v&quot;: &quot;acme&quot;}]" in body


def edit(client, letter, step, payload, headers='[["tenant", {"t": "str", "v": "acme"}]]', **extra):
    data = {"step": step, "payload_encoding": "text", "payload": payload, "headers": headers, **extra}
    return client.post(edit_url(letter), data)


def test_review_shows_the_diff_before_anything_is_saved(as_user, operator, store):
    letter = store(harvested(payload=b'{"order": 42}'))[0]
    response = edit(as_user(operator), letter, "review", '{"order": 43}')
    body = response.content.decode()
    assert response.status_code == 200
    assert '<span class="d-del">-  &quot;order&quot;: 42</span>' in body
    assert '<span class="d-add">+  &quot;order&quot;: 43</span>' in body
    assert "Save revision and redrive" in body
    assert not DeadLetterRevision.objects.exists()


def test_invalid_json_for_a_json_message_is_refused(as_user, operator, store):
    letter = store(harvested(payload=b'{"order": 42}'))[0]
    response = edit(as_user(operator), letter, "review", '{"order": 43')
    assert response.status_code == 400
    assert b"the message is JSON and this is not valid JSON" in response.content


def test_malformed_headers_are_refused(as_user, operator, store):
    letter = store(harvested())[0]
    response = edit(as_user(operator), letter, "review", '{"order": 1}', headers='[["x", {"t": "nope"}]]')
    assert response.status_code == 400 and b"headers must be a JSON list" in response.content


def reviewed(client, letter, payload, headers='[["tenant", {"t": "str", "v": "acme"}]]'):
    body = edit(client, letter, "review", payload, headers).content.decode()
    return body.split('name="reviewed" value="', 1)[1].split('"', 1)[0]


def test_saving_a_revision_leaves_the_original_untouched(as_user, operator, store):
    letter = store(harvested(payload=b'{"order": 42}'))[0]
    client = as_user(operator)
    digest = reviewed(client, letter, '{"order": 43}', '[["tenant", {"t": "str", "v": "globex"}]]')
    response = edit(
        client,
        letter,
        "save",
        '{"order": 43}',
        '[["tenant", {"t": "str", "v": "globex"}]]',
        reviewed=digest,
        note="sku typo",
    )
    assert response.status_code == 302 and response["Location"] == reverse("dlq-message", args=[letter.pk])
    revision = DeadLetterRevision.objects.get(dead_letter=letter)
    assert bytes(revision.payload) == b'{"order": 43}' and revision.note == "sku typo"
    assert header_codec.get(revision.headers, "tenant") == "globex"
    letter.refresh_from_db()
    assert bytes(letter.payload) == b'{"order": 42}' and header_codec.get(letter.headers, "tenant") == "acme"


def test_a_save_of_content_that_differs_from_the_reviewed_one_shows_the_diff_again(as_user, operator, store):
    letter = store(harvested(payload=b'{"order": 42}'))[0]
    client = as_user(operator)
    digest = reviewed(client, letter, '{"order": 43}')
    response = edit(client, letter, "save", '{"order": 99}', reviewed=digest)
    assert response.status_code == 200 and b"Review the changes" in response.content
    assert not DeadLetterRevision.objects.exists()


def test_save_and_redrive_creates_a_job_for_the_revision(as_user, operator, store):
    letter = store(harvested(payload=b'{"order": 42}'))[0]
    client = as_user(operator)
    digest = reviewed(client, letter, '{"order": 43}')
    response = edit(client, letter, "save_redrive", '{"order": 43}', reviewed=digest)
    job = RedriveJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("dlq-job", args=[job.pk])
    assert job.total == 1 and job.attempts.get().dead_letter_id == letter.pk
    assert DeadLetterRevision.objects.filter(dead_letter=letter).count() == 1


def test_a_binary_payload_is_edited_as_base64(as_user, operator, store):
    letter = store(harvested(payload=b"\xff\x00\x01", content_type=""))[0]
    client = as_user(operator)
    assert b'<option value="base64" selected>' in client.get(edit_url(letter)).content
    data = {"step": "review", "payload_encoding": "base64", "payload": "/wAC", "headers": "[]"}
    digest = client.post(edit_url(letter), data).content.decode().split('name="reviewed" value="')[1][:64]
    client.post(edit_url(letter), {**data, "step": "save", "reviewed": digest})
    assert bytes(DeadLetterRevision.objects.get().payload) == b"\xff\x00\x02"
    bad = client.post(edit_url(letter), {**data, "payload": "***"})
    assert bad.status_code == 400 and b"not valid base64" in bad.content


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_viewer_cannot_edit(as_user, viewer, store, method):
    letter = store(harvested())[0]
    response = getattr(as_user(viewer), method)(edit_url(letter), {"step": "review", "payload": "{}"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "headers", ['[["x", {"t": "str", "v": "a\\u0000b"}]]', '[["x\\u0000", {"t": "str", "v": "b"}]]']
)
def test_a_nul_in_edited_headers_is_a_form_error(as_user, operator, store, headers):
    # JSON's \u0000 passed the form and reached PostgreSQL, whose jsonb cannot hold it (a 500)
    letter = store(harvested(payload=b'{"order": 42}'))[0]
    client = as_user(operator)
    for step in ("review", "save"):
        response = edit(client, letter, step, '{"order": 43}', headers, reviewed="x")
        assert response.status_code == 400, step
        assert b"headers may not contain NUL characters" in response.content
    assert not DeadLetterRevision.objects.exists()
