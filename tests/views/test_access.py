"""Sign-in, sign-out, and who may open which page (every page requires login; roles gate actions)."""

import pytest
from django.urls import reverse

from dlqadmin.models import AuditEvent, RedriveJob
from tests.views.conftest import harvested

pytestmark = pytest.mark.django_db

PAGES = [
    ("dlq-overview", {}),
    ("dlq-messages", {}),
    ("dlq-groups", {}),
    ("dlq-jobs", {}),
    ("dlq-connections", {}),
    ("dlq-audit", {}),
]


@pytest.mark.parametrize(("name", "kwargs"), PAGES)
def test_every_page_sends_anonymous_users_to_the_sign_in_page(client, name, kwargs):
    response = client.get(reverse(name, kwargs=kwargs))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_pages_with_ids_require_login_too(client, store):
    letter = store(harvested())[0]
    job = RedriveJob.objects.create(total=1)
    for url in (
        reverse("dlq-message", args=[letter.pk]),
        reverse("dlq-message-payload", args=[letter.pk]),
        reverse("dlq-group", args=[letter.error_group_id]),
        reverse("dlq-job", args=[job.pk]),
        reverse("dlq-job-progress", args=[job.pk]),
    ):
        assert client.get(url).status_code == 302, url


def test_the_sign_in_page_is_the_dashboards_own(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert "dlqadmin/login.html" in [t.name for t in response.templates]
    assert "admin/login.html" not in [t.name for t in response.templates]
    assert b'name="csrfmiddlewaretoken"' in response.content


def test_signing_in_lands_on_the_overview(client, operator):
    response = client.post(reverse("login"), {"username": "operator", "password": "pass-123-word"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_a_wrong_password_is_refused_with_a_message(client, operator):
    response = client.post(reverse("login"), {"username": "operator", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_signing_out_takes_a_post(as_user, operator):
    client = as_user(operator)
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 302
    assert client.get("/").status_code == 302


@pytest.mark.parametrize(("name", "kwargs"), PAGES)
def test_an_operator_opens_every_page(as_user, operator, name, kwargs):
    assert as_user(operator).get(reverse(name, kwargs=kwargs)).status_code == 200


def test_a_viewer_reads_but_cannot_see_the_audit_log(as_user, viewer):
    client = as_user(viewer)
    for name, kwargs in PAGES:
        expected = 403 if name == "dlq-audit" else 200
        assert client.get(reverse(name, kwargs=kwargs)).status_code == expected, name
    assert b"Audit log" not in client.get("/").content


def test_a_user_without_a_role_gets_403(as_user, django_user_model):
    nobody = django_user_model.objects.create_user("nobody", password="pass-123-word")
    response = as_user(nobody).get("/")
    assert response.status_code == 403
    assert b"Your role does not allow this" in response.content


def test_the_audit_log_lists_events_newest_first_and_filters(as_user, operator):
    AuditEvent.objects.create(
        actor_name="alice", action="redrive.create", target_type="redrivejob", target_id="7"
    )
    AuditEvent.objects.create(actor_name="bob", action="messages.discard", count=3)
    client = as_user(operator)
    body = client.get(reverse("dlq-audit")).content.decode()
    assert body.index("messages.discard") < body.index("redrive.create")
    assert 'href="/jobs/7/"' in body
    filtered = client.get(reverse("dlq-audit"), {"action": "redrive."}).content.decode().split("<table")[1]
    assert "redrive.create" in filtered and "messages.discard" not in filtered
    assert "alice" in client.get(reverse("dlq-audit"), {"actor": "ALICE"}).content.decode()


def test_the_audit_page_offers_no_way_to_change_events(as_user, operator):
    AuditEvent.objects.create(actor_name="alice", action="redrive.create")
    body = as_user(operator).get(reverse("dlq-audit")).content.decode()
    assert '<form method="post"' not in body.split("<main", 1)[1]


def test_the_sign_in_page_is_throttled_like_every_other_sign_in(django_user_model, settings):
    from django.test import Client

    settings.DLQADMIN_LOGIN_MAX_FAILURES = 3
    django_user_model.objects.create_user("carol-throttle", password="correct-horse-battery")
    client = Client(REMOTE_ADDR="192.0.2.77")
    for _ in range(3):
        client.post(reverse("login"), {"username": "carol-throttle", "password": "wrong"})
    response = client.post(
        reverse("login"), {"username": "carol-throttle", "password": "correct-horse-battery"}
    )
    assert response.status_code == 200 and "_auth_user_id" not in client.session
