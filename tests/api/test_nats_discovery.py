"""Discovery on a NATS connection suggests every work stream, with its consumers' max_deliver,
and the discover page adds an advisory source for one: prepared on save, then harvested."""

from __future__ import annotations

import asyncio
import html
import re

import pytest
from django.test import Client
from django.urls import reverse

from dlqadmin.models import Source
from tests.conftest import NATS_URL
from tests.support.nats import (
    add_worker,
    connected,
    delete_streams,
    fail_both_ways,
    wait_for_advisories,
    work_stream,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def streams():
    created: list[tuple[str, str]] = []
    yield created
    asyncio.run(delete_streams(created))


def discovered(as_admin, connection_id: int) -> dict[tuple[str, str], dict]:
    response = as_admin.get(f"/api/v1/connections/{connection_id}/discover/")
    assert response.status_code == 200, response.content
    return {(d["mode"], d["address"]): d for d in response.json()}


def row_of(page: str, address: str) -> str:
    rows = [row for row in page.split("<tr>") if f'<td class="mono">{address}<' in row]
    assert len(rows) == 1, f"{address} is not one row of the discover page"
    return rows[0]


def form_fields(row: str) -> dict[str, str]:
    """What the browser posts from the row's enable form (its inputs, as rendered)."""
    fields = {}
    for tag in re.findall(r"<input[^>]*>", row):
        name, value = re.search(r'name="([^"]*)"', tag), re.search(r'value="([^"]*)"', tag)
        if name:
            fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
    fields.pop("csrfmiddlewaretoken", None)
    return fields


def test_every_stream_is_suggested_with_max_deliver_and_added_from_the_discover_page(
    as_admin, as_operator, admin_user, streams
):
    response = as_admin.post(
        "/api/v1/connections/", {"name": "nats-discover", "kind": "nats", "url": NATS_URL}, format="json"
    )
    assert response.status_code == 201, response.content
    connection_id = response.json()["id"]
    stream, subject = asyncio.run(work_stream(NATS_URL, streams))
    idle, _ = asyncio.run(work_stream(NATS_URL, streams))  # no consumer at all (yet)

    async def consumers():
        async with connected(NATS_URL) as (_, js):
            await add_worker(js, stream, max_deliver=5, name="billing")
            await add_worker(js, stream, max_deliver=-1, name="audit")

    asyncio.run(consumers())
    capture = f"DLQADMIN_ADV_{stream}"
    streams.append((NATS_URL, capture))

    # the API suggests both, with the consumers and their limits
    found = discovered(as_admin, connection_id)
    work = found[("advisory", stream)]
    assert work["consumers"] == [
        {"name": "audit", "max_deliver": None},
        {"name": "billing", "max_deliver": 5},
    ]
    assert work["options"] == {"needs_prepare": True} and work["already_added"] is False
    assert work["reason"].startswith("consumer billing has max_deliver 5; enable capture")
    assert found[("advisory", idle)]["consumers"] == []
    assert "without consumers" in found[("advisory", idle)]["reason"]

    # the discover page shows them and adds one through its enable form
    client = Client()
    client.force_login(admin_user)
    page = client.get(reverse("dlq-connection-discover", args=[connection_id]))
    assert page.status_code == 200
    row = row_of(page.content.decode(), stream)
    assert 'consumer <span class="mono">billing</span>: max_deliver 5' in row
    assert 'consumer <span class="mono">audit</span>: no max_deliver' in row
    assert "without consumers" in row_of(page.content.decode(), idle)
    added = client.post(reverse("dlq-source-add", args=[connection_id]), form_fields(row), follow=True)
    assert added.status_code == 200 and added.redirect_chain[-1][0] == reverse("dlq-connections")
    assert f"Stream {capture} (created by dlqadmin) captures" in added.content.decode()

    source = Source.objects.get(connection_id=connection_id, address=stream)
    body = as_admin.get(f"/api/v1/sources/{source.pk}/").json()
    assert body["mode"] == "advisory" and body["prepare"]["status"] == "ready"
    assert body["prepare"]["options"]["capture_stream"] == capture
    again = discovered(as_admin, connection_id)[("advisory", stream)]
    assert again["already_added"] is True and again["options"]["capture_stream"] == capture

    # it harvests what the consumers fail from now on
    asyncio.run(fail_both_ways(NATS_URL, stream, subject))
    asyncio.run(wait_for_advisories(NATS_URL, capture, stream, ("MAX_DELIVERIES", "MSG_TERMINATED")))
    response = as_operator.post(f"/api/v1/sources/{source.pk}/harvest/")
    assert response.status_code == 200, response.content
    assert response.json()["inserted"] == 2
