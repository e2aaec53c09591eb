"""The filter language: parsing, clear errors, and the rows each filter selects."""

import base64
from datetime import UTC, datetime, timedelta

import pytest
from django.http import QueryDict

from brokers import headers
from dlqadmin.models import DeadLetter, DeadLetterState, ErrorGroup
from dlqadmin.selectors import (
    DeadLetterFilter,
    FilterError,
    dead_letter_page,
    dead_letters,
    dead_letters_for,
    error_groups_for,
    visibility_snapshot,
    visible_sources,
)
from dlqadmin.services.connections import connection_create

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def rows():
    rmq = connection_create(name="rmq", kind="rabbitmq", url="amqp://127.0.0.1:5672/")
    kafka = connection_create(name="kafka", kind="kafka", url="127.0.0.1:9092")
    orders = rmq.sources.create(name="orders", mode="queue", address="orders.dlq")
    payments = kafka.sources.create(name="payments", mode="topic", address="payments-dlt")
    made = {}
    specs = [
        ("a", orders, "new", "rejected", "order 1 not found", b'{"order": 1}', {"tenant": "acme"}, 0),
        ("b", orders, "redriven", "expired", "ttl", b'{"order": 2}', {"tenant": "globex"}, 1),
        ("c", payments, "new", "exception", "card declined", b"card=4242", {}, 2),
        ("d", payments, "failed", "exception", "Timeout calling inventory", b"\xff\xfe", {}, 3),
    ]
    for name, source, status, reason, error, payload, hdrs, hours in specs:
        encoded = (
            headers.encode_mapping(hdrs)
            if source is orders
            else headers.encode_pairs([(k, v.encode()) for k, v in hdrs.items()])
        )
        made[name] = DeadLetter.objects.create(
            source=source,
            position=name,
            status=status,
            reason=reason,
            error_message=error,
            payload=payload,
            headers=encoded,
            failed_at=T0 + timedelta(hours=hours),
        )
    # a Kafka record whose header is bytes on the wire
    made["e"] = DeadLetter.objects.create(
        source=payments,
        position="e",
        reason="exception",
        payload=b"{}",
        failed_at=T0 + timedelta(hours=4),
        headers=headers.encode_pairs([("tenant", b"acme"), ("tenant", None)]),
    )
    return made


def names(qs):
    return sorted(qs.values_list("position", flat=True))


FILTER_CASES = [
    ("", ["a", "b", "c", "d", "e"]),
    ("source=orders", ["a", "b"]),
    ("connection=kafka", ["c", "d", "e"]),
    ("status=new&status=failed", ["a", "c", "d", "e"]),
    ("reason=expired", ["b"]),
    ("since=2026-11-01T02:00:00Z", ["c", "d", "e"]),
    ("until=2026-11-01T02:00:00Z", ["a", "b"]),
    ("header=tenant:acme", ["a", "e"]),
    ("q=declined", ["c"]),
    ("q=4242", ["c"]),
    ("q=timeout", ["d"]),
    ("source=payments&q=order", []),
]


@pytest.mark.parametrize(("query", "expected"), FILTER_CASES)
def test_each_filter_selects_exactly_the_matching_rows(rows, query, expected):
    assert names(dead_letters(DeadLetterFilter.parse(QueryDict(query)))) == expected


@pytest.mark.parametrize(("query", "expected"), FILTER_CASES)
def test_a_count_reads_the_same_rows_from_the_state_table_unless_a_header_needs_the_body(
    rows, query, expected
):
    counted = dead_letters(DeadLetterFilter.parse(QueryDict(query)), counting=True)
    assert sorted(counted.values_list("id", flat=True)) == sorted(rows[name].pk for name in expected)
    assert counted.model is (DeadLetter if "header=" in query else DeadLetterState)


def test_ids_and_names_both_identify_a_source(rows):
    by_id = DeadLetterFilter.parse({"source": [rows["a"].source_id]})
    assert names(dead_letters(by_id)) == ["a", "b"]


def test_a_json_filter_round_trips(rows):
    f = DeadLetterFilter.parse(
        {"status": ["new"], "header": ["tenant:acme"], "since": "2026-11-01T00:00:00+00:00"}
    )
    assert DeadLetterFilter.parse(f.to_dict()).to_dict() == f.to_dict()
    assert names(dead_letters(f)) == ["a", "e"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"status": "exploded"}, "status"),
        ({"since": "yesterday-ish"}, "since"),
        ({"header": "no-colon"}, "header"),
        ({"error_group": "abc"}, "error_group"),
        ({"colour": "red"}, "filter"),
        ({"q": "x" * 501}, "q"),
    ],
)
def test_bad_input_is_a_clear_field_error(data, field):
    with pytest.raises(FilterError) as err:
        DeadLetterFilter.parse(data)
    assert field in err.value.errors and err.value.errors[field]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        # PostgreSQL cannot hold these: the parser must answer, not the database
        ({"since": "0001-01-01T00:00:00+01:00"}, "since", "is out of range (years 1 to 9999 in UTC)"),
        ({"until": "9999-12-31T23:59:59-01:00"}, "until", "is out of range (years 1 to 9999 in UTC)"),
        ({"since": "2026-11-01T00:00:00+25:00"}, "since", "is not an ISO-8601 date/time"),
        ({"since": "2026-11-01\x00"}, "since", "is not an ISO-8601 date/time"),
        (
            {"error_group": "99999999999999999999"},
            "error_group",
            "an integer id from 1 to 9223372036854775807",
        ),
        ({"error_group": "\u00b2"}, "error_group", "an integer id from 1 to"),  # int("²") fails
        ({"error_group": 0}, "error_group", "an integer id from 1 to"),
        ({"max_id": "9223372036854775808"}, "max_id", "an integer from -9223372036854775807 to"),
        ({"max_id": "\u00b2"}, "max_id", "an integer from"),
        ({"max_id": True}, "max_id", "an integer from"),
        ({"max_id": "9" * 5000}, "max_id", "an integer from"),  # beyond int()'s digit limit
    ],
)
def test_values_postgresql_or_int_would_refuse_are_field_errors(data, field, message):
    with pytest.raises(FilterError) as err:
        DeadLetterFilter.parse(data)
    assert message in err.value.errors[field]


def test_any_utc_offset_python_reads_is_converted_before_the_query(rows):
    """+20:51 is valid ISO-8601 but beyond PostgreSQL's +-15:59: it is sent as UTC."""
    f = DeadLetterFilter.parse(QueryDict("since=2026-11-01T22:51:00%2B20:51"))  # = 02:00 UTC
    assert f.since == datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    assert names(dead_letters(f)) == ["c", "d", "e"]
    assert names(dead_letters(DeadLetterFilter.parse({"until": "0399-08-15T00:04:02.73+20:51"}))) == []


@pytest.mark.parametrize("value", ["--1", "-", "\u00b2", "1-", "99999999999999999999999999"])
def test_a_header_value_that_only_looks_numeric_is_matched_as_text(rows, value):
    letter = rows["a"]
    letter.headers = [*letter.headers, ["x-odd", {"t": "str", "v": value}]]
    letter.save(update_fields=["headers"])
    assert names(dead_letters(DeadLetterFilter.parse({"header": f"x-odd:{value}"}))) == ["a"]


def test_an_integer_header_is_matched_by_its_digits(rows):
    letter = rows["b"]
    letter.headers = [*letter.headers, ["x-retries", {"t": "int", "v": -3}]]
    letter.save(update_fields=["headers"])
    assert names(dead_letters(DeadLetterFilter.parse({"header": "x-retries:-3"}))) == ["b"]


def test_keyset_pages_cover_every_row_once_in_order(rows):
    qs = dead_letters(DeadLetterFilter())
    seen, cursor = [], None
    while True:
        page = dead_letter_page(qs, cursor=cursor, size=2)
        seen += [r.position for r in page.items]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == ["e", "d", "c", "b", "a"]


def test_a_forged_cursor_is_a_filter_error(rows):
    with pytest.raises(FilterError):
        dead_letter_page(dead_letters(DeadLetterFilter()), cursor="not-a-cursor!!")


@pytest.mark.parametrize(
    "position",
    ["0001-01-01T00:00:00+01:00|1", "2026-11-01T00:00:00|99999999999999999999", "2026-11-01T00:00:00|\u00b2"],
)
def test_a_cursor_forged_out_of_range_is_a_filter_error(rows, position):
    cursor = base64.urlsafe_b64encode(position.encode()).decode()
    with pytest.raises(FilterError) as err:
        dead_letter_page(dead_letters(DeadLetterFilter()), cursor=cursor)
    assert err.value.errors == {"cursor": "invalid cursor"}


def test_a_cursor_with_an_offset_postgresql_refuses_still_pages(rows):
    position = f"2026-11-01T22:51:00+20:51|{2**62}"  # 02:00 UTC, after every row of that time
    cursor = base64.urlsafe_b64encode(position.encode()).decode()
    page = dead_letter_page(dead_letters(DeadLetterFilter()), cursor=cursor)
    assert [r.position for r in page.items] == ["c", "b", "a"]


# ---- who sees which sources ------------------------------------------------------------------


@pytest.fixture
def people(django_user_model):
    from tests.conftest import user_in_role

    return {
        "operator": user_in_role(django_user_model, "operator"),
        "payroll": user_in_role(django_user_model, "operator"),
        "ann": user_in_role(django_user_model, "viewer"),
        "admin": user_in_role(django_user_model, "admin"),
        "nobody": django_user_model.objects.create_user("nobody", password="pass-123-word"),
    }


def visible_names(user) -> list[str]:
    return sorted(visible_sources(user).values_list("name", flat=True))


def test_restricted_sources_are_seen_by_their_groups_users_and_admins_only(rows, people):
    from django.contrib.auth.models import Group

    payroll, finance = Group.objects.create(name="payroll"), Group.objects.create(name="finance")
    people["payroll"].groups.add(payroll, finance)
    orders, payments = rows["a"].source, rows["c"].source
    for fingerprint, source in (("o", orders), ("p", payments), ("none", None)):
        ErrorGroup.objects.create(fingerprint=fingerprint, source=source)
    assert visible_names(people["operator"]) == ["orders", "payments"]  # nothing restricted yet
    orders.allowed_groups.add(payroll, finance)  # shared with two of the member's groups...
    orders.allowed_users.add(people["payroll"])  # ...and with them by name: still listed once
    payments.allowed_users.add(people["ann"])
    assert visible_names(people["operator"]) == []
    assert visible_names(people["payroll"]) == ["orders"]
    assert visible_names(people["ann"]) == ["payments"]
    assert visible_names(people["admin"]) == visible_names(None) == ["orders", "payments"]
    assert visible_names(people["nobody"]) == []  # no role: nothing, restricted or not
    assert sorted(error_groups_for(people["ann"]).values_list("fingerprint", flat=True)) == ["none", "p"]
    assert names(dead_letters_for(people["ann"])) == ["c", "d", "e"]


def test_a_visibility_snapshot_asks_once_whether_anything_is_restricted(rows, people):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    operator = people["operator"]

    def asked(block) -> int:
        with CaptureQueriesContext(connection) as captured:
            block()
        return sum("dlqadmin_source_allowed_" in q["sql"] for q in captured.captured_queries)

    def reads():
        list(visible_sources(operator))
        list(dead_letters_for(operator))
        list(error_groups_for(operator))

    assert asked(reads) == 3
    with visibility_snapshot():
        assert asked(reads) == 1
    rows["a"].source.allowed_users.add(people["ann"])  # a later snapshot sees the change
    with visibility_snapshot():
        assert visible_names(operator) == ["payments"]
        assert names(dead_letters_for(operator)) == ["c", "d", "e"]
