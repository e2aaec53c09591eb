"""Match counts on the list pages (issue 8): a page counts at most COUNT_CAP matches ("1,000+"),
the exact number is computed only on request, and "select all matching" still acts on exactly
the pinned set whose number the operator was shown."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dlqadmin import selectors_dashboard
from dlqadmin.models import DeadLetter, DeadLetterStatus
from tests.conftest import user_in_role
from tests.support.access_world import build
from tests.views.conftest import harvested

pytestmark = pytest.mark.django_db
URL = "/messages/"


@pytest.fixture
def cap_of_three(monkeypatch):
    monkeypatch.setattr(selectors_dashboard, "COUNT_CAP", 3)


def pinned_filter(body: str) -> str:
    return body.split('name="filter" value="', 1)[1].split('"', 1)[0].replace("&amp;", "&")


def count_queries(queries) -> list[str]:
    return [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]


def test_a_page_never_counts_every_match(as_user, operator, store):
    store(*[harvested(minutes_ago=i) for i in range(60)])
    client = as_user(operator)
    for query in ({}, {"status": "new"}, {"q": "order"}):
        with CaptureQueriesContext(connection) as captured:
            assert client.get(URL, query).status_code == 200
        counts = count_queries(captured.captured_queries)
        assert counts, query
        assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_more_matches_than_the_cap_show_a_capped_count_and_a_count_exactly_link(
    as_user, operator, store, cap_of_three
):
    store(*[harvested(minutes_ago=i) for i in range(30)])
    body = as_user(operator).get(URL, {"page_size": 25}).content.decode()
    assert "<strong data-total-count>3+</strong> messages match" in body
    assert 'data-total-exact="0"' in body and "count exactly" in body
    assert "Select all 3+ matching this filter" in body


def test_a_header_filter_sends_the_rows_first_and_its_capped_count_right_after(
    as_user, operator, store, cap_of_three
):
    store(*[harvested(minutes_ago=i) for i in range(30)], harvested(headers={"tenant": "other"}))
    client = as_user(operator)
    with CaptureQueriesContext(connection) as captured:
        body = client.get(URL, {"page_size": 25, "header": "tenant:acme"}).content.decode()
    assert count_queries(captured.captured_queries) == []  # the rows do not wait for the count
    assert body.count("<tr data-row>") == 25 and "counting</strong> matches…" in body
    assert "Select all matching this filter" in body and 'data-total-exact="0"' in body
    pinned = pinned_filter(body)
    link = (
        body.split('hx-trigger="load"', 1)[0].rsplit('hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    )
    assert link == f"{reverse('dlq-messages-count')}?{pinned}&capped=1"
    store(harvested(), harvested())  # arrive after the page: not part of the pinned set
    with CaptureQueriesContext(connection) as captured:
        fragment = client.get(link, HTTP_HX_REQUEST="true").content.decode()
    assert all("LIMIT" in sql.upper() for sql in count_queries(captured.captured_queries))
    assert "<strong data-total-count>3+</strong> messages match" in fragment and "count exactly" in fragment
    exact = fragment.split('hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert "capped" not in exact and "max_id=" in exact
    assert 'data-exact="30"' in client.get(exact, HTTP_HX_REQUEST="true").content.decode()


def test_a_header_filter_below_the_cap_gets_an_exact_count_after_the_rows(as_user, operator, store):
    store(*[harvested(minutes_ago=i) for i in range(30)], harvested(headers={"tenant": "other"}))
    client = as_user(operator)
    few = client.get(URL, {"header": "tenant:acme"}).content.decode()  # 50 a page: all on screen
    assert "counting" not in few and "<strong data-total-count>30</strong> messages match" in few
    many = client.get(URL, {"page_size": 25, "header": "tenant:acme"}).content.decode()
    link = many.split('hx-trigger="load"', 1)[0].rsplit('hx-get="', 1)[1].split('"', 1)[0]
    fragment = client.get(link.replace("&amp;", "&"), HTTP_HX_REQUEST="true").content.decode()
    assert 'data-exact="30"' in fragment and "count exactly" not in fragment


def test_a_count_within_the_cap_is_exact_and_offers_no_link(as_user, operator, store, cap_of_three):
    store(*[harvested(minutes_ago=i) for i in range(3)])
    body = as_user(operator).get(URL).content.decode()
    assert "<strong data-total-count>3</strong> messages match" in body
    assert 'data-total-exact="1"' in body and "count exactly" not in body


def test_a_first_page_holding_every_match_needs_no_count_query(as_user, operator, store, cap_of_three):
    store(*[harvested(minutes_ago=i) for i in range(20)])
    with CaptureQueriesContext(connection) as captured:
        body = as_user(operator).get(URL, {"page_size": 25}).content.decode()
    assert "<strong data-total-count>20</strong> messages match" in body
    assert count_queries(captured.captured_queries) == []


def test_a_later_page_still_counts_the_whole_filter(as_user, operator, store, cap_of_three):
    store(*[harvested(minutes_ago=i) for i in range(3)])
    client = as_user(operator)
    body = client.get(URL, {"page_size": 25}).content.decode()
    assert "<strong data-total-count>3</strong>" in body
    letters = list(DeadLetter.objects.order_by("-failed_at", "-id"))
    from dlqadmin.selectors import encode_cursor

    later = client.get(URL, {"cursor": encode_cursor(letters[0])}).content.decode()
    assert "<strong data-total-count>3</strong>" in later  # the filter's matches, not the page's


def test_count_exactly_answers_the_exact_number_of_the_pinned_filter(as_user, operator, store, cap_of_three):
    store(*[harvested(minutes_ago=i) for i in range(30)])
    client = as_user(operator)
    body = client.get(URL, {"status": "new", "page_size": 25}).content.decode()
    pinned = pinned_filter(body)
    assert "max_id=" in pinned
    link = body.split("data-count-exactly", 1)[0].rsplit('hx-get="', 1)[1].split('"', 1)[0]
    link = link.replace("&amp;", "&")
    assert link == f"{reverse('dlq-messages-count')}?{pinned}"
    store(harvested(), harvested())  # arrive after the page: not part of the pinned set
    response = client.get(link, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    fragment = response.content.decode()
    assert 'data-exact="30"' in fragment and "<strong data-total-count>30</strong> messages match" in fragment
    assert "<html" not in fragment and "count exactly" not in fragment


def test_the_exact_count_uses_thousands_separators(as_user, operator, store, monkeypatch):
    store(harvested())
    monkeypatch.setattr(
        selectors_dashboard, "count_exact", lambda qs: selectors_dashboard.MatchCount(1234567, True)
    )
    body = as_user(operator).get(reverse("dlq-messages-count"), {"status": "new"}).content.decode()
    assert "<strong data-total-count>1,234,567</strong>" in body and 'data-exact="1234567"' in body


def test_count_exactly_counts_only_what_the_user_may_see(as_user, operator, django_user_model):
    world = build()
    outsider = as_user(operator)
    insider_user = user_in_role(django_user_model, "operator")
    insider_user.groups.add(world.payroll)
    url = reverse("dlq-messages-count")
    assert 'data-exact="1"' in outsider.get(url, {"status": "new"}).content.decode()
    assert 'data-exact="2"' in as_user(insider_user).get(url, {"status": "new"}).content.decode()
    assert 'data-exact="0"' in outsider.get(url, {"source": world.secret.name}).content.decode()


def test_count_exactly_rejects_a_bad_filter_and_needs_a_signed_in_viewer(as_user, viewer, client):
    assert as_user(viewer).get(reverse("dlq-messages-count"), {"status": "bogus"}).status_code == 400
    assert client.get(reverse("dlq-messages-count")).status_code == 302  # to the login page


def test_select_all_beyond_the_cap_acts_on_exactly_the_pinned_set(as_user, operator, store, cap_of_three):
    shown = store(*[harvested(minutes_ago=i) for i in range(30)])
    client = as_user(operator)
    body = client.get(URL, {"status": "new", "page_size": 25}).content.decode()
    assert "3+" in body
    pinned = pinned_filter(body)
    exact = client.get(f"{reverse('dlq-messages-count')}?{pinned}").content.decode()
    assert 'data-exact="30"' in exact
    late = store(harvested())[0]
    response = client.post(
        reverse("dlq-messages-bulk"),
        {"action": "resolve", "select_all": "1", "filter": pinned, "return": "status=new"},
        HTTP_HX_REQUEST="true",
    )
    assert b"Resolved 30 messages" in response.content
    assert {m.status for m in DeadLetter.objects.filter(pk__in=[m.pk for m in shown])} == {"resolved"}
    assert DeadLetter.objects.get(pk=late.pk).status == DeadLetterStatus.NEW


def test_the_group_page_counts_its_messages_up_to_the_cap(as_user, operator, store, cap_of_three):
    letters = store(*[harvested(error=f"order {i} not found", minutes_ago=i) for i in range(60)])
    group = letters[0].error_group_id
    with CaptureQueriesContext(connection) as captured:
        body = as_user(operator).get(reverse("dlq-group", args=[group])).content.decode()
    assert "<strong data-total-count>3+</strong> messages match" in body
    assert f"error_group={group}" in body.split("data-count-url=", 1)[1].split(">", 1)[0]
    unbounded = [sql for sql in count_queries(captured.captured_queries) if "LIMIT" not in sql.upper()]
    assert all("GROUP BY" in sql.upper() for sql in unbounded), unbounded  # only the status breakdown


def statement_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


def test_a_count_that_takes_too_long_gives_up_instead_of_slowing_the_page(store, monkeypatch):
    store(*[harvested(minutes_ago=i) for i in range(3)])
    before = statement_timeout()
    monkeypatch.setattr(selectors_dashboard, "COUNT_TIMEOUT_MS", 50)
    slow = DeadLetter.objects.extra(where=["(SELECT true FROM pg_sleep(0.3))"])
    assert selectors_dashboard.count_capped(slow, at_least=2) == selectors_dashboard.MatchCount(2, False)
    assert selectors_dashboard.count_capped(slow).text == "many"
    assert statement_timeout() == before  # the limit was for that one count
    assert selectors_dashboard.count_capped(DeadLetter.objects.all()).text == "3"
    assert statement_timeout() == before


def test_while_no_source_is_restricted_counts_skip_the_visibility_join(as_user, operator, store):
    store(*[harvested(minutes_ago=i) for i in range(30)])
    with CaptureQueriesContext(connection) as captured:
        as_user(operator).get(URL, {"page_size": 25})
    counts = count_queries(captured.captured_queries)
    assert counts and not any("allowed_groups" in sql for sql in counts)  # index-only counts stay possible
