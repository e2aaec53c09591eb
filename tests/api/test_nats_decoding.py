"""Payload decoding on NATS, end to end: an application dead-letters MessagePack orders (one of
them zstd-compressed) onto its own JetStream DLQ stream; an admin adds the source through the API
with ``payload_format: msgpack`` (NATS carries no content type by default); the dead letters are
harvested through the API, shown decoded by the API (``?decode=true``) and the message page, and
found by a number inside them with ``q=`` once the search indexer has run."""

import asyncio

import cramjam
import msgpack
import pytest
from django.test import Client
from django.urls import reverse
from nats.js.api import RetentionPolicy, StreamConfig  # noqa: TID251 - a real DLQ stream

from dlqadmin.models import DeadLetter
from dlqadmin.services.search import search_index_backlog
from tests.api.test_end_to_end import set_up_source
from tests.support.nats import NATS_URL, connected, delete_streams, uid

pytestmark = pytest.mark.django_db

ORDERS = {
    "plain": {"order_id": 424242, "customer": "ada", "lines": [{"sku": "A-1", "qty": 2}]},
    "zstd": {"order_id": 737373, "customer": "grace", "lines": [{"sku": "B-9", "qty": 1}]},
}


def body(name: str) -> bytes:
    packed = msgpack.packb(ORDERS[name])
    return bytes(cramjam.zstd.compress(packed)) if name == "zstd" else packed


@pytest.fixture
def nats_dlq():
    """A JetStream stream the application dead-letters into, holding one message per order."""
    u, created = uid(), []

    async def build() -> str:
        stream = f"T_NDECODE_{u}"
        async with connected(NATS_URL) as (_, js):
            await js.add_stream(
                StreamConfig(name=stream, subjects=[f"t.ndecode.{u}.>"], retention=RetentionPolicy.LIMITS)
            )
            created.append((NATS_URL, stream))
            for name in ORDERS:
                await js.publish(
                    f"t.ndecode.{u}.orders",
                    body(name),
                    headers={
                        "x-original-subject": "orders.created",
                        "x-dead-letter-reason": f"{name} failed",
                    },
                )
        return stream

    yield asyncio.run(build())
    asyncio.run(delete_streams(created))


@pytest.fixture
def harvested(nats_dlq, as_admin, as_operator):
    source = set_up_source(
        as_admin, kind="nats", url=NATS_URL, name=nats_dlq, mode="dlq_stream", address=nats_dlq
    )
    response = as_admin.patch(
        f"/api/v1/sources/{source['id']}/", {"options": {"payload_format": "msgpack"}}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["options"]["payload_format"] == "msgpack"
    response = as_operator.post(f"/api/v1/sources/{source['id']}/harvest/")
    assert response.status_code == 200 and response.json()["inserted"] == 2, response.content
    letters = {
        letter.error_message.split()[0]: letter
        for letter in DeadLetter.objects.filter(source_id=source["id"])
    }
    assert {name: bytes(letter.payload) for name, letter in letters.items()} == {n: body(n) for n in ORDERS}
    return source, letters


@pytest.mark.parametrize(("name", "steps"), [("plain", ["msgpack"]), ("zstd", ["zstd", "msgpack"])])
def test_the_api_shows_a_nats_msgpack_dead_letter_decoded(harvested, as_operator, name, steps):
    _, letters = harvested
    response = as_operator.get(f"/api/v1/messages/{letters[name].pk}/?decode=true")
    assert response.status_code == 200, response.content
    decoded = response.json()["decoded"]
    assert decoded["value"] == ORDERS[name] and decoded["steps"] == steps and decoded["error"] == ""


def test_the_message_page_opens_a_nats_msgpack_dead_letter_on_the_decoded_tree(harvested, operator):
    _, letters = harvested
    client = Client()
    client.force_login(operator)
    page = client.get(reverse("dlq-message", args=[letters["zstd"].pk])).content.decode()
    decoded = page.split('id="view-decoded"')[1].split("</section>")[0]
    assert "Decoded: <strong>zstd → MessagePack</strong>" in decoded
    assert '<span class="j-key">&quot;customer&quot;</span>' in decoded and "grace" in decoded
    assert 'aria-selected="true" data-tab="decoded"' in page


def test_a_nats_msgpack_dead_letter_is_found_by_a_value_inside_it(harvested, as_operator):
    source, letters = harvested

    def found(q: str) -> list[int]:
        response = as_operator.get("/api/v1/messages/", {"q": q, "source": source["name"]})
        assert response.status_code == 200, response.content
        return [m["id"] for m in response.json()["results"]]

    # the numbers are binary in MessagePack, the second body is compressed: only decoding finds them
    assert found("737373") == []  # stored, not indexed yet
    assert search_index_backlog() >= 2
    assert found("424242") == [letters["plain"].pk]
    assert found("737373") == [letters["zstd"].pk]
    assert found('"customer": "grace"') == [letters["zstd"].pk]
    assert found("999999") == []
