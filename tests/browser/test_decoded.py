"""Decoded payloads in a real browser: a gzip-compressed JSON dead letter (real RabbitMQ) opens on
its Decoded tree, the Raw tab shows the stored bytes, and edit-and-redrive edits the decoded JSON
and saves a revision compressed as the original was."""

from __future__ import annotations

import gzip
import json

import pytest

from dlqadmin.models import DeadLetter, DeadLetterRevision, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import source_harvest
from tests.browser.conftest import expect, in_thread, sign_in
from tests.conftest import AMQP_URL
from tests.support import rabbit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ORDER = {"order": 42, "card": {"number": "4111 1111 1111 1111"}}


@pytest.fixture
def gzip_letter():
    top = in_thread(
        rabbit.dead_letter_bodies,
        [(gzip.compress(json.dumps(ORDER).encode()), {"content_type": "application/json"})],
    )
    connection = connection_create(
        name=f"rabbit {top.dlq[-6:]}", kind="rabbitmq", url=AMQP_URL, username="guest", password="guest"
    )
    source = Source.objects.create(connection=connection, name=top.dlq, mode="queue", address=top.dlq)
    assert in_thread(source_harvest, source=source).inserted == 1
    yield DeadLetter.objects.get(source=source)
    in_thread(rabbit.delete, top)


def test_a_gzip_message_opens_decoded_shows_raw_bytes_and_edits_as_json(server, page, operator, gzip_letter):
    sign_in(page, server, "operator")
    page.goto(f"{server}/messages/{gzip_letter.pk}/")
    expect(page.locator("[data-decoded-by]")).to_contain_text("gzip → JSON")
    expect(page.locator("#view-decoded")).to_contain_text("4111 1111 1111 1111")
    page.click("[data-tab=hex]")
    expect(page.locator("#view-hex")).to_be_visible()
    expect(page.locator("#view-decoded")).to_be_hidden()
    assert page.locator(".hexdump").inner_text().startswith("00000000  1f 8b")

    page.click("text=Edit and redrive…")
    assert page.locator("select[name=payload_encoding]").input_value() == "decoded"
    page.fill("textarea[name=payload]", json.dumps({**ORDER, "order": 43}, indent=2))
    page.click("button[value=review]")
    expect(page.locator(".diff")).to_contain_text('"order": 43')
    page.click("button[value=save]")
    expect(page.locator(".flash, [role=status], .messages").first).to_contain_text("Saved revision")
    revision = DeadLetterRevision.objects.get(dead_letter=gzip_letter)
    assert json.loads(gzip.decompress(bytes(revision.payload))) == {**ORDER, "order": 43}
