"""GET messages/{id}/?decode=true returns the decoded payload (masked like the payload); the
dead letters are real (RabbitMQ, harvested over the API: tests/support/decoded.py)."""

import pytest

from tests.api.conftest import token_client
from tests.support import rabbit
from tests.support.decoded import CARD, ORDER, harvest_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(admin_user):
    built = harvest_world(token_client(admin_user))
    yield built
    rabbit.delete(built.top)


def detail(client, letter, query="?decode=true") -> dict:
    response = client.get(f"/api/v1/messages/{letter.pk}/{query}")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.parametrize(
    ("name", "steps"),
    [("gzip", ["gzip", "json"]), ("msgpack", ["msgpack"]), ("zstd_of_gzip", ["zstd", "gzip", "json"])],
)
def test_decode_true_returns_the_decoded_value_and_what_decoded_it(world, as_operator, name, steps):
    body = detail(as_operator, world.letters[name])
    assert body["decoded"]["value"] == ORDER and body["decoded"]["steps"] == steps
    assert body["decoded"]["has_value"] and body["decoded"]["error"] == "" and not body["decoded"]["masked"]
    assert body["payload_format"] == "binary"  # the raw views are unchanged


def test_without_decode_the_detail_is_as_before(world, as_operator):
    assert detail(as_operator, world.letters["gzip"], query="")["decoded"] is None
    assert detail(as_operator, world.letters["gzip"], query="?decode=false")["decoded"] is None


def test_a_payload_that_fails_to_decode_says_why(world, as_operator):
    decoded = detail(as_operator, world.letters["truncated"])["decoded"]
    assert decoded["value"] is None and not decoded["has_value"] and "truncated" in decoded["error"]


def test_a_bad_decode_value_is_a_400(world, as_operator):
    response = as_operator.get(f"/api/v1/messages/{world.letters['gzip'].pk}/?decode=maybe")
    assert response.status_code == 400 and "decode" in response.json()["fields"]


def test_a_masking_rule_hides_the_decoded_field_and_the_encoded_bytes(
    world, as_admin, as_viewer, as_operator
):
    rule = {"name": "cards", "kind": "json_path", "pattern": "$.card.number", "replacement": "****"}
    assert as_admin.post("/api/v1/masking-rules/", rule, format="json").status_code == 201
    body = detail(as_viewer, world.letters["msgpack"])
    assert body["decoded"]["value"]["card"] == {"number": "****", "expiry": "12/29"}
    assert body["decoded"]["masked"] and body["payload_masked"]
    assert CARD not in str(body) and "msgpack" not in body["payload_text"]
    assert detail(as_operator, world.letters["msgpack"])["decoded"]["value"]["card"]["number"] == CARD
