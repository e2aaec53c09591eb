"""CSP readiness (no inline script, no inline handlers or styles), CSRF on every form, escaping."""

from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import reverse

from dlqadmin.models import DeadLetterRevision, RedriveAttempt, RedriveJob
from tests.views.conftest import HOSTILE, harvested

pytestmark = pytest.mark.django_db


class Audit(HTMLParser):
    """Collects what a `script-src 'self'` policy would block, and POST forms without a token."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []
        self.in_script = False
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"inline handler {name} on <{tag}>")
            if name == "style":
                self.problems.append(f"inline style on <{tag}>")
            if name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.problems.append(f"javascript: URL in {name}")
            if name.startswith("hx-on"):
                self.problems.append(f"{name} needs eval")
        if tag == "script":
            if not attributes.get("src") and attributes.get("type") != "application/json":
                self.problems.append("inline <script>")
            if attributes.get("src") and not attributes["src"].startswith("/static/"):
                self.problems.append(f"script from elsewhere: {attributes['src']}")
        if tag == "form":
            self.forms.append({"method": (attributes.get("method") or "get").lower(), "token": False})
        if tag == "input" and attributes.get("name") == "csrfmiddlewaretoken" and self.forms:
            self.forms[-1]["token"] = True


def audit(body: str) -> Audit:
    parser = Audit()
    parser.feed(body)
    return parser


@pytest.fixture
def every_page(store, source, connection, operator):
    letter = store(
        harvested(payload=HOSTILE.encode(), headers={"h": HOSTILE}, error=HOSTILE, stacktrace=HOSTILE)
    )[0]
    DeadLetterRevision.objects.create(dead_letter=letter, payload=b"{}")
    job = RedriveJob.objects.create(total=1, status="running")
    RedriveAttempt.objects.create(job=job, dead_letter=letter, status="failed", error=HOSTILE)
    return [
        reverse("dlq-overview"),
        reverse("dlq-messages"),
        reverse("dlq-message", args=[letter.pk]),
        reverse("dlq-message-edit", args=[letter.pk]),
        reverse("dlq-groups"),
        reverse("dlq-group", args=[letter.error_group_id]),
        reverse("dlq-redrive") + f"?source={source.pk}",
        reverse("dlq-jobs"),
        reverse("dlq-job", args=[job.pk]),
        reverse("dlq-connections"),
        reverse("dlq-connection-add"),
        reverse("dlq-connection-edit", args=[connection.pk]),
        reverse("dlq-source-edit", args=[source.pk]),
        reverse("dlq-audit"),
    ]


def test_no_page_needs_inline_script_and_every_post_form_carries_a_csrf_token(
    every_page, as_user, django_user_model
):
    superuser = django_user_model.objects.create_superuser("root", password="pass-123-word")
    client = as_user(superuser)
    for url in every_page:
        response = client.get(url)
        assert response.status_code == 200, url
        found = audit(response.content.decode())
        assert found.problems == [], (url, found.problems)
        assert all(f["token"] for f in found.forms if f["method"] == "post"), url


def test_the_sign_in_page_is_csp_clean_too(client):
    found = audit(client.get(reverse("login")).content.decode())
    assert found.problems == [] and found.forms == [{"method": "post", "token": True}]


def test_hostile_text_never_reaches_the_page_unescaped(every_page, as_user, django_user_model):
    client = as_user(django_user_model.objects.create_superuser("root", password="pass-123-word"))
    for url in every_page:
        body = client.get(url).content.decode()
        assert "<script>alert" not in body and "<img src=x" not in body, url


def test_posts_without_a_csrf_token_are_refused(store, operator):
    letter = store(harvested())[0]
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    response = client.post(reverse("dlq-messages-bulk"), {"action": "discard", "ids": [letter.pk]})
    assert response.status_code == 403
    letter.refresh_from_db()
    assert letter.status == "new"


def test_htmx_is_configured_to_never_eval_or_run_swapped_scripts(as_user, operator):
    body = as_user(operator).get(reverse("dlq-overview")).content.decode()
    assert '"allowEval":false' in body and '"allowScriptTags":false' in body
    assert '"includeIndicatorStyles":false' in body
