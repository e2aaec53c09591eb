"""The dashboard in a real browser: real RabbitMQ dead letters, filtered, selected, redriven and
watched to 100 % over the websocket; edit-and-redrive; hostile payloads stay inert; screenshots.

Screenshots go to a temporary folder; with SAVE_SCREENSHOTS=1 they are written to
docs/screenshots/ (the README's pictures)."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from brokers import headers as header_codec
from brokers.base import HarvestedMessage, Origin
from dlqadmin.models import DeadLetter, DeadLetterRevision, RedriveJob, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import dead_letters_store, source_harvest
from dlqadmin.services.redrive.jobs import redrive_job_create
from dlqadmin.services.redrive.worker import redrive_job_step
from tests.browser.conftest import ROOT, expect, in_thread, sign_in
from tests.conftest import AMQP_URL
from tests.support import rabbit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

HOSTILE = '<script>alert("pwn")</script>"><img src=x onerror=alert(1)>'


@pytest.fixture
def topologies():
    made = []

    def make(count, **kw):
        top = in_thread(rabbit.dead_letter, count, **kw)
        made.append(top)
        return top

    yield make
    for top in made:
        in_thread(rabbit.delete, top)


def harvest_rabbit(top) -> Source:
    connection = connection_create(
        name=f"rabbit {top.dlq[-6:]}", kind="rabbitmq", url=AMQP_URL, username="guest", password="guest"
    )
    source = Source.objects.create(connection=connection, name=top.dlq, mode="queue", address=top.dlq)
    report = in_thread(source_harvest, source=source)
    assert report.inserted > 0
    return source


def run_job_watching(page, job: RedriveJob) -> None:
    """Drive the job from the test process, one chunk at a time (each chunk publishes
    ``job.progress`` on the Redis channel layer), and wait for the page to show each step."""
    for _ in range(200):
        more = in_thread(redrive_job_step, job_id=job.pk).more
        job.refresh_from_db()
        expect(page.locator("[data-done]")).to_have_text(f"{job.done:,}")
        if not more:
            return


def synthetic(source: Source, count: int, **kw) -> list[DeadLetter]:
    now = timezone.now()
    batch = [
        HarvestedMessage(
            position=f"{source.name}-{i}-{kw.get('tag', '')}",
            payload=kw.get("payload", b'{"invoice": %d, "amount": "12.50"}' % i),
            headers=header_codec.encode_mapping(kw.get("headers", {"tenant": "acme"})),
            properties={"content_type": "application/json"},
            origin=Origin(topic="invoices", partition=i % 3, offset=1000 + i),
            reason=kw.get("reason", "deserialization"),
            error_class=kw.get("error_class", "InvoiceError"),
            error_message=kw.get("error", f"invoice {i} has no customer"),
            failed_at=now - timedelta(minutes=kw.get("spread", 7) * i + 1),
        )
        for i in range(count)
    ]
    result = dead_letters_store(source=source, batch=batch)
    return list(DeadLetter.objects.filter(pk__in=result.inserted_ids))


def screenshots_dir(tmp_path) -> Path:
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        target = ROOT / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        return target
    return tmp_path


def test_filter_select_all_redrive_and_watch_progress_over_the_websocket(server, page, operator, topologies):
    top = topologies(30, payload_prefix=b"order-")
    source = harvest_rabbit(top)
    other = Source.objects.create(
        connection=source.connection, name="billing-dlq", mode="queue", address="b.dlq"
    )
    synthetic(other, 4)  # must not be part of the redrive

    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    sign_in(page, server, "operator")
    page.goto(f"{server}/messages/?page_size=25")
    page.select_option("select[name=source]", str(source.pk))  # htmx: no full reload, URL updated
    page.wait_for_url(re.compile(rf"source={source.pk}"))
    assert page.locator("[data-total-count]").inner_text() == "30"
    assert page.locator("[data-row]").count() == 25

    page.check("[data-check-page]")
    page.click("[data-select-all]")
    assert page.locator("[data-select-all-msg]").is_visible()
    assert page.locator("[data-selected-count]").inner_text() == "30 selected"
    page.click("button:has-text('Redrive…')")

    page.wait_for_url(f"{server}/redrive/")
    assert page.locator("[data-plan-count]").inner_text() == "30"
    page.fill("input[name=batch_size]", "7")
    page.click("button:has-text('Redrive 30 messages')")
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    job = RedriveJob.objects.get()
    assert job.total == 30
    page.wait_for_selector("#live-dot.on")  # the job websocket is connected
    assert page.locator("[data-percent]").inner_text() == "0.0"

    run_job_watching(page, job)

    expect(page.locator("[data-percent]")).to_have_text("100.0")
    expect(page.locator("[data-job-status]")).to_have_text("Completed")  # the job's last event
    assert page.locator("[data-succeeded]").inner_text() == "30"
    assert page.locator("[data-live-note]").inner_text() == "Live over the websocket."
    assert any('"job.progress"' in frame for frame in frames), frames
    assert page.locator("[data-control=cancel]").is_hidden()
    arrived = sorted(m.body for m in in_thread(rabbit.drain, top.work_queue))
    assert arrived == sorted(f"order-{i}".encode() for i in range(30))
    assert DeadLetter.objects.filter(source=other, status="new").count() == 4
    assert page.js_errors == []


def test_edit_and_redrive_one_message(server, page, operator, topologies):
    top = topologies(2, payload_prefix=b"broken-")
    source = harvest_rabbit(top)
    letter = DeadLetter.objects.get(source=source, payload=b"broken-1")

    sign_in(page, server, "operator")
    page.goto(f"{server}/messages/{letter.pk}/")
    page.click("text=Edit and redrive…")
    page.fill("textarea[name=payload]", "fixed-1")
    page.fill("input[name=note]", "repaired by hand")
    page.click("button:has-text('Review changes')")
    assert page.locator(".d-del").first.inner_text() == "-broken-1"
    assert page.locator(".d-add").first.inner_text() == "+fixed-1"
    page.click("button:has-text('Save revision and redrive')")
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    page.wait_for_selector("#live-dot.on")
    job = RedriveJob.objects.get()
    run_job_watching(page, job)
    expect(page.locator("[data-percent]")).to_have_text("100.0")

    assert [m.body for m in in_thread(rabbit.drain, top.work_queue)] == [b"fixed-1"]
    letter.refresh_from_db()
    assert bytes(letter.payload) == b"broken-1" and letter.status == "redriven"
    assert bytes(DeadLetterRevision.objects.get(dead_letter=letter).payload) == b"fixed-1"
    page.goto(f"{server}/messages/{letter.pk}/")
    assert "repaired by hand" in page.locator("#hist-h + .timeline").inner_text()
    assert page.js_errors == []


def test_a_hostile_payload_renders_inert(server, page, viewer, connection_and_source):
    _, source = connection_and_source
    letter = synthetic(
        source,
        1,
        payload=HOSTILE.encode(),
        headers={"x-evil": HOSTILE},
        error=HOSTILE,
        error_class=HOSTILE,
        tag="evil",
    )[0]
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    sign_in(page, server, "viewer")
    page.goto(f"{server}/messages/")
    assert HOSTILE[:30] in page.locator(".payload-cell").first.inner_text()
    page.goto(f"{server}/messages/{letter.pk}/")
    page.click("[data-tab=text]")
    assert page.locator("[data-payload-text]").inner_text() == HOSTILE
    assert HOSTILE in page.locator("table.headers").first.inner_text()
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("document.querySelectorAll('main script').length") == 0
    page.wait_for_timeout(300)  # give an injected handler the chance to fire, if there were one
    assert dialogs == []


def test_new_failures_raise_a_banner_and_the_table_stays_still(server, page, viewer, connection_and_source):
    from dlqadmin import live

    _, source = connection_and_source
    synthetic(source, 30)
    sign_in(page, server, "viewer")
    page.goto(f"{server}/messages/?source={source.pk}")
    page.wait_for_selector("#live-dot.on")
    banner = page.locator("[data-live-banner]")
    assert not banner.is_visible() and banner.bounding_box()["height"] > 0  # the slot is reserved
    page.keyboard.press("j")  # keyboard: j focuses the first row, x ticks it
    page.keyboard.press("j")
    page.keyboard.press("x")
    assert page.locator("[data-row-check]").nth(1).is_checked()
    assert page.locator("[data-selected-count]").inner_text() == "1 selected"
    table_top = page.locator("table.messages").bounding_box()["y"]
    first_row = page.locator("[data-row]").first.inner_text()
    synthetic(source, 3, tag="late")
    for _ in range(5):  # the harvester's event; resent if it hit a websocket reconnect
        in_thread(live.dead_letters_arrived, source_id=source.pk, count=3)
        try:
            page.wait_for_selector("[data-live-banner].show", timeout=2500)
            break
        except Exception:  # noqa: BLE001 - retried
            continue
    assert re.match(
        r"(3|6|9|12|15) new failures since this page loaded\.", page.locator("[data-live-text]").inner_text()
    )
    assert page.locator("table.messages").bounding_box()["y"] == table_top
    assert page.locator("[data-row]").first.inner_text() == first_row
    in_thread(live.dead_letters_arrived, source_id=source.pk + 1000, count=5)  # another source: ignored
    page.click("[data-live-link]")
    expect(page.locator("[data-live-banner]")).not_to_have_class(re.compile(r"\bshow\b"))
    assert page.locator("[data-total-count]").inner_text() == "33"
    assert page.js_errors == []


@pytest.fixture
def connection_and_source():
    connection = connection_create(name="kafka-prod", kind="kafka", url="127.0.0.1:9092")
    source = Source.objects.create(
        connection=connection, name="invoices-dlt", mode="topic", address="invoices-dlt"
    )
    return connection, source


def test_screenshots_of_the_main_pages(server, page, admin_user, topologies, tmp_path, connection_and_source):
    """Realistic data on every page, then a 1280 px screenshot of each (read them!)."""
    kafka, invoices = connection_and_source
    top = topologies(12, payload_prefix=b"order-")
    orders = harvest_rabbit(top)
    orders.connection.name = "rabbitmq-prod"
    orders.connection.health_status, orders.connection.latency_ms = "ok", 3.2
    orders.connection.server_version = "RabbitMQ 3.12"
    orders.connection.last_checked_at = timezone.now()
    orders.connection.save()
    Source.objects.filter(pk=orders.pk).update(name="orders-dlq", backlog=0)
    nats = connection_create(name="nats-edge", kind="nats", url="nats://127.0.0.1:4222")
    nats.health_status, nats.last_error = "error", "nats: no servers available for connection"
    nats.save()
    Source.objects.create(
        connection=nats,
        name="payments-advisories",
        mode="advisory",
        address="PAYMENTS",
        last_error="timed out",
    )
    kafka.health_status, kafka.latency_ms, kafka.server_version = "ok", 8.0, "Kafka 3.7"
    kafka.save()
    Source.objects.filter(pk=invoices.pk).update(backlog=42)
    synthetic(invoices, 40, spread=240)
    synthetic(invoices, 15, error="customer 7 suspended", error_class="CustomerSuspended", spread=30, tag="b")
    DeadLetter.objects.filter(pk__in=DeadLetter.objects.filter(source=invoices).values("pk")[:3]).update(
        status="failed"
    )
    letter = DeadLetter.objects.filter(source=invoices).order_by("-failed_at").first()
    DeadLetterRevision.objects.create(
        dead_letter=letter, payload=b'{"invoice": 0, "customer": 7}', note="add customer"
    )
    ids = list(DeadLetter.objects.filter(source=invoices, status="new").values_list("pk", flat=True)[:20])
    job = in_thread(redrive_job_create, ids=ids, batch_size=5)
    RedriveJob.objects.filter(pk=job.pk).update(
        status="running", succeeded=11, failed=1, started_at=timezone.now()
    )

    out = screenshots_dir(tmp_path)
    sign_in(page, server, "admin-role")
    group = invoices.error_groups.order_by("-count").first()
    shots = {
        "overview": "/",
        "messages": f"/messages/?source={invoices.pk}",
        "message": f"/messages/{letter.pk}/",
        "group": f"/groups/{group.pk}/",
        "job": f"/jobs/{job.pk}/",
        "connections": "/connections/",
        "groups": "/groups/",
    }
    for name, path in shots.items():
        page.goto(server + path)
        page.wait_for_load_state("networkidle")
        if name == "overview":
            expect(page.locator("#failures-chart")).to_have_attribute("style", re.compile("height"))
        if name == "messages":
            page.check("[data-check-page]")
        page.screenshot(path=str(out / f"{name}.png"), full_page=name in ("overview", "message"))
        assert (out / f"{name}.png").stat().st_size > 10_000
    assert page.js_errors == []
