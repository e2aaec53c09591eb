"""Dead letters whose payloads need decoding, made for real: published to RabbitMQ with their
content type / encoding, rejected into a fresh DLQ, and harvested over the API as an admin
would (connection, source, harvest now). Used by the page and API tests of decoded payloads."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass

import cbor2
import cramjam
import msgpack

from dlqadmin.models import DeadLetter
from tests.conftest import AMQP_URL
from tests.support import rabbit

CARD = "4111 1111 1111 1111"
ORDER = {"order": 42, "card": {"number": CARD, "expiry": "12/29"}, "lines": [{"sku": "A-1", "qty": 2}]}

#: name -> (body, AMQP properties); harvested in this order
BODIES = {
    "gzip": (gzip.compress(json.dumps(ORDER).encode()), {"content_type": "application/json"}),
    "msgpack": (msgpack.packb(ORDER), {"content_type": "application/msgpack"}),
    "zstd_of_gzip": (bytes(cramjam.zstd.compress(gzip.compress(json.dumps(ORDER).encode()))), {}),
    "cbor": (cbor2.dumps(ORDER), {"content_type": "application/cbor"}),
    "truncated": (gzip.compress(json.dumps(ORDER).encode())[:25], {"content_type": "application/json"}),
    "plain": (json.dumps(ORDER).encode(), {"content_type": "application/json"}),
    "msgpack_bare": (msgpack.packb(ORDER), {}),  # no content type: the source setting says
}


@dataclass
class World:
    source: dict
    letters: dict[str, DeadLetter]
    top: rabbit.Topology


def harvest_world(admin_api) -> World:
    """Publish ``BODIES``, set the source up and harvest it, all through the API."""
    top = rabbit.dead_letter_bodies(list(BODIES.values()))
    response = admin_api.post(
        "/api/v1/connections/",
        {
            "name": f"rmq-{top.dlq}",
            "kind": "rabbitmq",
            "url": AMQP_URL,
            "username": "guest",
            "password": "guest",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    response = admin_api.post(
        "/api/v1/sources/",
        {"name": top.dlq, "connection": response.json()["id"], "mode": "queue", "address": top.dlq},
        format="json",
    )
    assert response.status_code == 201, response.content
    source = response.json()
    response = admin_api.post(f"/api/v1/sources/{source['id']}/harvest/")
    assert response.status_code == 200 and response.json()["inserted"] == len(BODIES), response.content
    rows = list(DeadLetter.objects.filter(source_id=source["id"]).order_by("id"))
    assert [bytes(r.payload) for r in rows] == [body for body, _ in BODIES.values()]  # stored as sent
    return World(source=source, letters=dict(zip(BODIES, rows, strict=True)), top=top)
