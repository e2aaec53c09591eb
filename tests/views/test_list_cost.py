"""The Messages table stays cheap as it grows and shows the same thing as before it was made
cheap: a fixed number of queries whatever the number of rows, rows built once in Python with
every value escaped, and filter choices read per request (never another user's, never stale)."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dlqadmin.models import DeadLetter, ErrorGroup, Source
from dlqadmin.services.connections import connection_create
from tests.conftest import user_in_role
from tests.support.access_world import build
from tests.views.conftest import HOSTILE, harvested

pytestmark = pytest.mark.django_db
URL = "/messages/"
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "results"}
#: the operator's full Messages page: session, user, roles, newest id, restricted?, the page, the
#: capped count (savepoint, timeout, count, timeout back, release: the test runs in a
#: transaction), error groups, reasons, connections, sources
MOST_QUERIES = 15


def queries_for(client, path, query=None, **headers) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path, query or {}, **headers).status_code == 200
    return len(captured.captured_queries)


@pytest.fixture
def two_sources(source, connection):
    other = Source.objects.create(connection=connection, name="billing-dlq", mode="queue", address="b.dlq")
    return source, other


def fill(store, sources, n: int) -> None:
    for i, into in enumerate(sources):
        store(
            *[harvested(minutes_ago=k + 1, error=f"order {k} not found") for k in range(i, n, len(sources))],
            into=into,
        )


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_the_list_costs_the_same_queries_for_25_or_50_rows(
    as_user, django_user_model, store, two_sources, role
):
    client = as_user(user_in_role(django_user_model, role))  # a viewer's rows go through masking
    fill(store, two_sources, 120)
    group = DeadLetter.objects.first().error_group_id
    for path, headers in ((URL, {}), (URL, HTMX), (reverse("dlq-group", args=[group]), {})):
        short, long = (queries_for(client, path, {"page_size": n}, **headers) for n in (25, 50))
        assert short == long, path


def test_a_full_page_needs_a_bounded_number_of_queries(as_user, operator, store, two_sources):
    fill(store, two_sources, 60)
    assert queries_for(as_user(operator), URL) <= MOST_QUERIES


def test_rows_show_every_column_with_hostile_text_escaped(as_user, operator, store):
    letter = store(harvested(error=HOSTILE, error_class=HOSTILE, reason=HOSTILE, payload=HOSTILE.encode()))[0]
    DeadLetter.objects.filter(pk=letter.pk).update(origin_queue=HOSTILE)
    gone = store(harvested(error="", error_class="", reason="", payload=b"x" * 2048))[0]
    DeadLetter.objects.filter(pk=gone.pk).update(payload_available=False, origin_queue="")
    body = as_user(operator).get(URL).content.decode()
    assert "<script>alert" not in body and "<img src=x" not in body
    escaped = (
        "&lt;script&gt;alert(&quot;pwn&quot;)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
    )
    assert body.count(escaped) >= 6  # class, title, line, reason, destination (title + text), preview
    for row in (letter, gone):
        assert f'<a href="{reverse("dlq-message", args=[row.pk])}" data-row-link><time datetime=' in body
        assert f'aria-label="Select message {row.pk}"' in body and f"#{row.pk}</div>" in body
    assert '<span class="badge st-new">new</span>' in body
    assert '<div class="muted small">RabbitMQ</div>' in body
    assert '<span class="err-class">–</span>' in body and "(no error message)" in body
    assert '<td class="mono small clip-line" title="">–</td>' in body
    assert (
        '<span class="muted">(payload gone from broker)</span><span class="muted"> · 2.0\xa0KB</span>' in body
    )


def test_a_source_group_and_reason_made_after_a_page_was_shown_are_offered_on_the_next(
    as_user, operator, store, source, connection
):
    store(harvested())
    client = as_user(operator)
    assert "late-dlq" not in client.get(URL).content.decode()
    late = Source.objects.create(connection=connection, name="late-dlq", mode="queue", address="late.dlq")
    group = ErrorGroup.objects.create(
        fingerprint="late", source=late, error_class="LateError", reason="late_reason", message_pattern="x"
    )
    body = client.get(URL).content.decode()
    assert f'<option value="{late.pk}" >late-dlq</option>' in body
    assert f'<option value="{group.pk}" >#{group.pk} LateError: x</option>' in body
    assert '<option value="late_reason">' in body


def test_filter_choices_follow_each_users_restrictions_request_by_request(
    as_user, operator, django_user_model
):
    world = build()
    insider_user = user_in_role(django_user_model, "operator")
    insider_user.groups.add(world.payroll)
    outsider, insider = as_user(operator), as_user(insider_user)
    secret_option = f'<option value="{world.secret.pk}" >{world.secret.name}</option>'
    open_option = f'<option value="{world.source.pk}" >{world.source.name}</option>'
    for _ in range(2):  # alternating users: nothing one was shown carries over to the other
        assert secret_option in insider.get(URL).content.decode()
        body = outsider.get(URL).content.decode()
        assert secret_option not in body and "PayrollError" not in body and open_option in body
    # restricting the open source takes effect on the very next request
    world.source.allowed_groups.add(Group.objects.create(name="another-team"))
    body = outsider.get(URL).content.decode()
    assert open_option not in body and world.letter.error_class not in body
    assert open_option not in insider.get(URL).content.decode()


def test_reasons_are_offered_only_from_sources_the_user_may_see(as_user, operator, django_user_model):
    world = build()
    ErrorGroup.objects.create(
        fingerprint="payroll-only",
        source=world.secret,
        error_class="X",
        reason="payroll_only",
        message_pattern="x",
    )
    insider_user = user_in_role(django_user_model, "operator")
    insider_user.groups.add(world.payroll)
    assert '<option value="payroll_only">' in as_user(insider_user).get(URL).content.decode()
    body = as_user(operator).get(URL).content.decode()
    assert '<option value="payroll_only">' not in body and '<option value="rejected">' in body


def test_connections_are_offered_only_with_a_source_the_user_may_see(as_user, operator, django_user_model):
    world = build()
    hr = connection_create(name="hr-rabbit", kind="rabbitmq", url="amqp://127.0.0.1:5672/")
    payroll_only = Source.objects.create(connection=hr, name="hr-dlq", mode="queue", address="hr.dlq")
    payroll_only.allowed_groups.add(world.payroll)
    option = f'<option value="{hr.pk}" >hr-rabbit</option>'
    insider_user = user_in_role(django_user_model, "operator")
    insider_user.groups.add(world.payroll)
    assert option in as_user(insider_user).get(URL).content.decode()
    assert option in as_user(user_in_role(django_user_model, "admin")).get(URL).content.decode()
    body = as_user(operator).get(URL).content.decode()
    assert option not in body and f'<option value="{world.source.connection_id}" >' in body


def test_a_chosen_filter_option_stays_selected(as_user, operator, store, two_sources):
    first, other = two_sources
    letter = store(harvested(), into=other)[0]
    body = (
        as_user(operator)
        .get(
            URL,
            {"source": other.name, "connection": other.connection_id, "error_group": letter.error_group_id},
        )
        .content.decode()
    )
    assert f'<option value="{other.pk}" selected>billing-dlq</option>' in body
    assert f'<option value="{first.pk}" >orders-dlq</option>' in body
    assert f'<option value="{other.connection_id}" selected>rabbit-main</option>' in body
    assert f'<option value="{letter.error_group_id}" selected>#{letter.error_group_id} OrderNotFound' in body
