"""More matches than a list page counts (issue 8): the page says "1,000+", "count exactly" and
"select all matching" fetch the exact number of the pinned set, and a bulk action on everything
matching confirms that number and acts on exactly that set."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from brokers import headers as header_codec
from brokers.base import HarvestedMessage, Origin
from dlqadmin import selectors_dashboard
from dlqadmin.models import DeadLetter, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import dead_letters_store
from tests.browser.conftest import expect, sign_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
MANY = selectors_dashboard.COUNT_CAP + 5


def stored(source: Source, count: int, tag: str) -> None:
    now = timezone.now()
    batch = [
        HarvestedMessage(
            position=f"{tag}-{i}",
            payload=b'{"invoice": %d}' % i,
            headers=header_codec.encode_mapping({"tenant": "acme"}),
            properties={"content_type": "application/json"},
            origin=Origin(topic="invoices", partition=0, offset=i),
            reason="deserialization",
            error_class="InvoiceError",
            error_message=f"invoice {i} has no customer",
            failed_at=now - timedelta(seconds=i + 1),
        )
        for i in range(count)
    ]
    for start in range(0, count, 500):
        dead_letters_store(source=source, batch=batch[start : start + 500])


@pytest.fixture
def invoices():
    connection = connection_create(name="kafka-prod", kind="kafka", url="127.0.0.1:9092")
    return Source.objects.create(
        connection=connection, name="invoices-dlt", mode="topic", address="invoices-dlt"
    )


def test_select_all_beyond_the_cap_confirms_and_discards_exactly_the_pinned_set(
    server, page, operator, invoices, tmp_path
):
    stored(invoices, MANY, "first")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    sign_in(page, server, "operator")
    page.goto(f"{server}/messages/?source={invoices.pk}&page_size=25")
    cap = f"{selectors_dashboard.COUNT_CAP:,}+"
    assert page.locator("[data-total-count]").inner_text() == cap
    assert page.locator("[data-count-exactly]").is_visible()

    page.check("[data-check-page]")
    assert page.locator("[data-select-all]").inner_text() == f"Select all {cap} matching this filter"
    stored(invoices, 1, "late")  # arrives after the page was shown: not part of the selection
    page.click("[data-select-all]")
    expect(page.locator("[data-select-all-count]")).to_have_text(f"{MANY:,}")
    expect(page.locator("[data-selected-count]")).to_have_text(f"{MANY:,} selected")
    assert page.locator("button:has-text('Discard')").is_enabled()
    page.screenshot(path=str(tmp_path / "messages-select-all.png"))

    page.click("button:has-text('Discard')")
    expect(page.locator(".flash").first).to_contain_text(f"Discarded {MANY} messages")
    assert dialogs == [
        f"Discard all {MANY:,} messages matching this filter? They stay stored but are taken out of redrive."
    ]
    assert DeadLetter.objects.filter(source=invoices, status="discarded").count() == MANY
    assert DeadLetter.objects.get(source=invoices, position="late-0").status == "new"
    assert page.js_errors == []


def test_count_exactly_replaces_the_capped_count(server, page, viewer, invoices, tmp_path):
    stored(invoices, MANY, "first")
    sign_in(page, server, "viewer")
    page.goto(f"{server}/messages/?source={invoices.pk}&page_size=25")
    assert page.locator("[data-total-count]").inner_text().endswith("+")
    page.screenshot(path=str(tmp_path / "messages-capped.png"))
    page.click("[data-count-exactly]")
    expect(page.locator("[data-total-count]")).to_have_text(f"{MANY:,}")
    assert page.locator("[data-count-exactly]").count() == 0
    assert re.search(rf"{MANY:,} messages match", page.locator(".count").inner_text())
    page.check("[data-check-page]")  # the exact number is known now: select-all shows it at once
    page.click("[data-select-all]")
    expect(page.locator("[data-selected-count]")).to_have_text(f"{MANY:,} selected")
    assert page.js_errors == []


def test_a_header_filter_shows_rows_first_then_its_count(server, page, viewer, invoices, tmp_path):
    stored(invoices, 40, "first")
    sign_in(page, server, "viewer")
    page.goto(f"{server}/messages/?header=tenant:acme&page_size=25")
    expect(page.locator("[data-total-count]")).to_have_text("40")  # fetched right after the rows
    assert page.locator("tr[data-row]").count() == 25
    assert "40 messages match" in page.locator(".count").inner_text()
    page.screenshot(path=str(tmp_path / "messages-header-count.png"))
    page.check("[data-check-page]")
    page.click("[data-select-all]")
    expect(page.locator("[data-selected-count]")).to_have_text("40 selected")
    assert page.js_errors == []
