"""messages/: the dashboard's filter language over HTTP, keyset pages, detail, edit, bulk actions."""

import base64

import pytest
from django.http import QueryDict

from brokers import headers
from dlqadmin.models import (
    AuditEvent,
    DeadLetter,
    DeadLetterRevision,
    DeadLetterStatus,
    MaskingKind,
    MaskingRule,
)
from dlqadmin.selectors import DeadLetterFilter, dead_letters, dead_letters_for

pytestmark = pytest.mark.django_db

URL = "/api/v1/messages/"


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [m["id"] for m in response.json()["results"]]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "source=orders",
        "connection=kafka",
        "status=new&status=failed",
        "reason=expired",
        "since=2026-11-01T02:00:00Z",
        "until=2026-11-01T02:00:00Z",
        "header=tenant:acme",
        "q=card",
        "q=order 1",
        "error_group={group}",
        "source={source_id}&status=parked",
        "connection=rmq&header=tenant:globex",
    ],
)
def test_the_query_string_selects_the_same_rows_as_the_selector(as_viewer, viewer, store, query):
    query = query.format(group=store["a"].error_group_id, source_id=store["sources"][1].pk)
    expected = list(dead_letters(DeadLetterFilter.parse(QueryDict(query))).values_list("id", flat=True))
    assert ids(as_viewer.get(f"{URL}?{query}")) == expected
    assert expected == list(
        dead_letters_for(viewer, DeadLetterFilter.parse(QueryDict(query))).values_list("id", flat=True)
    )
    assert expected or query  # sanity: the store is not empty


def test_list_items_are_compact_and_newest_failure_first(as_viewer, store):
    body = as_viewer.get(URL).json()
    assert [m["id"] for m in body["results"]] == [store[k].pk for k in "edcba"]
    item = body["results"][0]
    assert "payload_base64" not in item and "headers" not in item and "stacktrace" not in item
    assert item["source_name"] == "payments" and item["status"] == "parked"
    assert item["destination"] == "payments" and item["error_class"] == "CardError"
    assert body["next"] is None


def test_cursor_pages_walk_every_row_once(as_viewer, store):
    seen, url, pages = [], f"{URL}?page_size=2", 0
    while url:
        body = as_viewer.get(url).json()
        seen += [m["id"] for m in body["results"]]
        url, pages = body["next"], pages + 1
        assert pages <= 5
    assert pages == 3
    assert seen == [store[k].pk for k in "edcba"]


def test_the_next_link_keeps_the_filter(as_viewer, store):
    body = as_viewer.get(f"{URL}?connection=kafka&page_size=1").json()
    assert "connection=kafka" in body["next"]
    assert ids(as_viewer.get(body["next"])) == [store["d"].pk]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=bogus", "status"),
        ("since=yesterday", "since"),
        ("error_group=abc", "error_group"),
        ("header=novalue", "header"),
        ("colour=red", "filter"),
        ("cursor=!!!", "cursor"),
        ("cursor=MjAyMHwx", "cursor"),
        ("page_size=0", "page_size"),
        ("page_size=abc", "page_size"),
        ("page_size=501", "page_size"),
        ("max_id=x", "max_id"),
        (f"q={'x' * 501}", "q"),
    ],
)
def test_bad_filters_are_400_with_the_field_named(as_viewer, store, query, field):
    response = as_viewer.get(f"{URL}?{query}")
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body["fields"] and body["error"]


@pytest.mark.parametrize(
    "query",
    [
        "error_group=99999999999999999999999",
        "source=99999999999999999999999",
        "connection=99999999999999999999999",
        "max_id=99999999999999999999999",
        "source=%C2%B2",  # a superscript two: str.isdigit() says yes, int() says no
        "q=%00",
        "header=a:%00",
        "reason=%00",
        "source=%00",
        "since=99999-01-01",
    ],
)
def test_hostile_filter_values_are_never_a_server_error(as_viewer, store, query):
    response = as_viewer.get(f"{URL}?{query}")
    assert response.status_code in (200, 400), response.content


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("since=0001-01-01T00:00:00%2B01:00", "since", "is out of range (years 1 to 9999 in UTC)"),
        ("until=9999-12-31T23:59:59-01:00", "until", "is out of range (years 1 to 9999 in UTC)"),
        ("error_group=99999999999999999999", "error_group", "an integer id from 1 to 9223372036854775807"),
        ("error_group=%C2%B2", "error_group", "an integer id from 1 to"),
        ("max_id=9223372036854775808", "max_id", "an integer from -9223372036854775807 to"),
        (
            "cursor=MDAwMS0wMS0wMVQwMDowMDowMCswMTowMHwx",
            "cursor",
            "invalid cursor",
        ),  # 0001-01-01T00:00+01:00|1
    ],
)
def test_out_of_range_filter_values_are_400_with_the_reason(as_viewer, store, query, field, message):
    response = as_viewer.get(f"{URL}?{query}")
    assert response.status_code == 400, response.content
    assert message in response.json()["fields"][field]


def test_odd_offsets_and_numeric_looking_header_values_filter_instead_of_failing(
    as_viewer, as_operator, store
):
    # both were 500s found by schemathesis: PostgreSQL refuses offsets beyond +-15:59, and
    # int("--1") raised while building the header match
    letter = store["a"]
    letter.headers = [*letter.headers, ["x", {"t": "str", "v": "--1"}]]
    letter.save(update_fields=["headers"])
    assert ids(as_viewer.get(f"{URL}?header=x:--1")) == [letter.pk]
    assert ids(as_viewer.get(f"{URL}?header=x:%C2%B2")) == []
    since = ids(as_viewer.get(f"{URL}?since=2026-11-01T22:51:00%2B20:51"))  # 02:00 UTC
    assert since == [store[n].pk for n in ("e", "d", "c")]
    body = {"filter": {"header": ["x:--1"], "since": "0399-08-15T00:04:02.73+20:51"}}
    response = as_operator.post(f"{URL}resolve/", body, format="json")
    assert response.status_code == 200 and response.json() == {"count": 1}, response.content


def test_detail_has_payload_views_typed_headers_origin_error_and_history(as_operator, store):
    row = store["a"]
    body = as_operator.get(f"{URL}{row.pk}/").json()
    assert body["payload_base64"] == base64.b64encode(b'{"order": 1}').decode()
    assert body["payload_text"] == '{"order": 1}' and body["payload_json"] == {"order": 1}
    assert body["payload_format"] == "json" and body["payload_masked"] is False
    assert body["key_base64"] == base64.b64encode(b"k-a").decode()
    assert body["headers"] == [
        {"name": "tenant", "type": "str", "value_text": "acme", "node": {"t": "str", "v": "acme"}}
    ]
    assert body["origin"]["queue"] == "orders" and body["origin"]["destination"] == "orders"
    assert body["error"] == {
        "class": "OrderError",
        "message": "order 1 not found",
        "stacktrace": "OrderError: order 1 not found\n  at line 1",
        "reason": "rejected",
    }
    assert body["status"] == "new" and body["kind"] == "rabbitmq"
    assert body["history"]["harvested_at"] and body["history"]["redrive_attempts"] == []
    assert body["history"]["revisions"] == []


def test_binary_payloads_have_no_text_and_bytes_headers_show_their_type(as_operator, store):
    body = as_operator.get(f"{URL}{store['d'].pk}/").json()
    assert body["payload_base64"] == base64.b64encode(b"\xff\xfe").decode()
    assert body["payload_text"] is None and body["payload_json"] is None
    assert body["payload_format"] == "binary"
    body = as_operator.get(f"{URL}{store['e'].pk}/").json()
    assert body["headers"][0]["type"] == "bytes" and body["headers"][0]["value_text"] == "acme"


def test_viewers_see_payloads_headers_and_errors_through_the_masking_rules(as_viewer, as_operator, store):
    MaskingRule.objects.create(name="order ids", kind=MaskingKind.JSON_PATH, pattern="order")
    MaskingRule.objects.create(name="tenant", kind=MaskingKind.HEADER, pattern="tenant", replacement="[t]")
    MaskingRule.objects.create(name="numbers", kind=MaskingKind.REGEX, pattern=r"\d+", replacement="#")
    body = as_viewer.get(f"{URL}{store['a'].pk}/").json()
    assert body["payload_masked"] is True
    assert body["payload_json"] == {"order": "***"} and b"1" not in base64.b64decode(body["payload_base64"])
    assert body["headers"][0]["value_text"] == "[t]"
    assert body["error"]["message"] == "order # not found" and "1" not in body["error"]["stacktrace"]
    listed = as_viewer.get(f"{URL}?source=orders").json()["results"]
    assert [m["error_message"] for m in listed if m["id"] == store["a"].pk] == ["order # not found"]
    group = as_viewer.get(f"/api/v1/error-groups/{store['a'].error_group_id}/").json()
    assert group["sample_message"] == "" or "1" not in group["sample_message"]
    assert "1" not in group["message_pattern"]
    # operators may see everything
    body = as_operator.get(f"{URL}{store['a'].pk}/").json()
    assert body["payload_masked"] is False and body["payload_json"] == {"order": 1}
    assert body["error"]["message"] == "order 1 not found"


def test_messages_of_restricted_sources_are_invisible(as_viewer, as_operator, store, operator):
    orders, payments = store["sources"]
    orders.allowed_users.add(operator)
    assert {m["source_name"] for m in as_viewer.get(URL).json()["results"]} == {"payments"}
    assert as_viewer.get(f"{URL}{store['a'].pk}/").status_code == 404
    assert [s["name"] for s in as_viewer.get("/api/v1/sources/").json()["results"]] == ["payments"]
    assert as_operator.get(f"{URL}{store['a'].pk}/").status_code == 200
    assert len(as_operator.get(URL).json()["results"]) == 5


def test_unknown_and_non_numeric_ids_are_404(as_viewer, store):
    assert as_viewer.get(f"{URL}999999/").status_code == 404
    assert as_viewer.get(f"{URL}abc/").status_code == 404
    assert as_viewer.get(f"{URL}99999999999999999999999/").status_code == 404
    assert as_viewer.get(f"{URL}999999/").json()["error"] == "not found"


# ---- edit ------------------------------------------------------------------------------------
def test_patch_stores_a_revision_and_keeps_the_original(as_operator, operator, store):
    row = store["a"]
    response = as_operator.patch(
        f"{URL}{row.pk}/", {"payload_text": '{"order": 1, "fixed": true}', "note": "add flag"}, format="json"
    )
    assert response.status_code == 200, response.content
    (revision,) = DeadLetterRevision.objects.filter(dead_letter=row)
    assert bytes(revision.payload) == b'{"order": 1, "fixed": true}' and revision.note == "add flag"
    assert revision.created_by == operator and revision.headers == row.headers
    row.refresh_from_db()
    assert bytes(row.payload) == b'{"order": 1}'
    history = response.json()["history"]["revisions"]
    assert (
        history[0]["payload_text"] == '{"order": 1, "fixed": true}' and history[0]["created_by"] == "operator"
    )
    assert AuditEvent.objects.filter(action="messages.edit", target_id=str(row.pk)).exists()


def test_patch_with_base64_and_headers(as_operator, store):
    row = store["d"]
    nodes = [{"name": "tenant", "node": {"t": "bytes", "v": base64.b64encode(b"acme").decode()}}]
    payload = base64.b64encode(b"\x00\x01").decode()
    response = as_operator.patch(
        f"{URL}{row.pk}/", {"payload_base64": payload, "headers": nodes}, format="json"
    )
    assert response.status_code == 200, response.content
    revision = row.revisions.get()
    assert bytes(revision.payload) == b"\x00\x01"
    assert headers.decode_pairs(revision.headers) == [("tenant", b"acme")]


def test_patch_headers_as_returned_by_get_can_be_sent_back(as_operator, store):
    row = store["a"]
    current = as_operator.get(f"{URL}{row.pk}/").json()["headers"]
    response = as_operator.patch(f"{URL}{row.pk}/", {"headers": current, "note": "same"}, format="json")
    assert response.status_code == 200, response.content
    assert row.revisions.get().headers == row.headers


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payload_text": "{not json"}, "payload_text"),
        ({"payload_base64": base64.b64encode(b"[1,").decode()}, "payload_base64"),
        ({"payload_base64": "***"}, "payload_base64"),
        ({"payload_text": "{}", "payload_base64": "e30="}, "payload_text"),
        ({}, "payload_text"),
        ({"note": "only a note"}, "payload_text"),
        ({"payload_text": "{}", "colour": "red"}, "colour"),
        ({"headers": [["tenant", {"t": "str", "v": "x"}]]}, "headers.0"),
        ({"headers": [{"name": "n", "node": {"t": "nope"}}]}, "headers"),
        ({"headers": [{"name": "n", "node": {"t": "array", "v": [1, 2]}}]}, "headers"),
        ({"headers": [{"name": "n", "node": {"t": "table", "v": ["ab"]}}]}, "headers"),
        ({"headers": [{"name": "n", "node": {"t": "decimal", "v": "1.2.3"}}]}, "headers"),
        ({"headers": [{"name": "n", "node": {"t": "str", "v": "a\x00b"}}]}, "headers.0.node"),
        ({"payload_text": 5}, None),
        ({"note": "x" * 501, "payload_text": "{}"}, "note"),
    ],
)
def test_invalid_edits_are_400_with_field_errors(as_operator, store, body, field):
    response = as_operator.patch(f"{URL}{store['a'].pk}/", body, format="json")
    assert response.status_code == 400, response.content
    if field:
        assert field in response.json()["fields"], response.json()
    assert not DeadLetterRevision.objects.exists()


def test_malformed_json_bodies_are_400(as_operator, store):
    for raw in (b"{", b"[1, 2", b"nul", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, b'{"a": NaN}'):
        response = as_operator.generic(
            "PATCH", f"{URL}{store['a'].pk}/", raw, content_type="application/json"
        )
        assert response.status_code == 400, (raw[:10], response.content)
        assert response.json()["error"].startswith("malformed request body")
    response = as_operator.generic("PATCH", f"{URL}{store['a'].pk}/", b"x=1", content_type="text/plain")
    assert response.status_code == 415 and response.json()["error"]


# ---- discard / resolve -----------------------------------------------------------------------
def test_discard_by_ids_and_resolve_by_filter(as_operator, store):
    response = as_operator.post(f"{URL}discard/", {"ids": [store["a"].pk, store["c"].pk]}, format="json")
    assert response.status_code == 200 and response.json() == {"count": 2}
    assert set(DeadLetter.objects.filter(status="discarded").values_list("position", flat=True)) == {"a", "c"}
    response = as_operator.post(
        f"{URL}resolve/", {"filter": {"connection": "kafka", "status": ["failed", "parked"]}}, format="json"
    )
    assert response.json() == {"count": 2}
    assert set(DeadLetter.objects.filter(status="resolved").values_list("position", flat=True)) == {"d", "e"}
    assert AuditEvent.objects.filter(action="messages.resolved", count=2).exists()
    response = as_operator.post(f"{URL}archive/", {"filter": {"status": "resolved"}}, format="json")
    assert response.json() == {"count": 2}
    assert set(DeadLetter.objects.filter(status="archived").values_list("position", flat=True)) == {"d", "e"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "ids"),
        ({"ids": [1], "filter": {"status": "new"}}, "ids"),
        ({"ids": []}, "ids"),
        ({"ids": "1,2"}, "ids"),
        ({"ids": ["x"]}, "ids.0"),
        ({"ids": [1.5]}, "ids.0"),
        ({"ids": [None]}, "ids.0"),
        ({"ids": [-1]}, "ids.0"),
        ({"ids": [2**64]}, "ids.0"),
        ({"ids": list(range(1, 10_002))}, "ids"),
        ({"filter": {}}, "filter"),
        ({"filter": "status=new"}, "filter"),
        ({"filter": {"status": "bogus"}}, "filter.status"),
        ({"filter": {"colour": "red"}}, "filter.filter"),
        ({"filter": {"q": "a\x00"}}, "filter"),
        ({"ids": [1], "dry_run": True}, "dry_run"),
    ],
)
def test_bad_selections_are_400(as_operator, store, body, field):
    response = as_operator.post(f"{URL}discard/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"], response.json()
    assert not DeadLetter.objects.filter(status=DeadLetterStatus.DISCARDED).exists()


def test_a_body_that_is_not_an_object_is_400(as_operator, store):
    for body in ([1, 2], "ids", 5, None):
        response = as_operator.post(f"{URL}resolve/", body, format="json")
        assert response.status_code == 400, (body, response.content)
