"""The message page shows a decoded payload (gzip, zstd of gzip, MessagePack, CBOR) as a JSON
tree with what decoded it, keeps a Raw tab with the exact bytes, says why a payload could not be
decoded, and masks decoded fields. The dead letters are real: published to RabbitMQ, rejected
into a DLQ and harvested over the API (tests/support/decoded.py)."""

import base64
import json

import pytest
from django.urls import reverse

from dlqadmin.models import DeadLetter
from tests.api.conftest import token_client
from tests.support import rabbit
from tests.support.decoded import BODIES, CARD, harvest_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(admin_user):
    built = harvest_world(token_client(admin_user))
    yield built
    rabbit.delete(built.top)


def page(client, letter) -> str:
    response = client.get(reverse("dlq-message", args=[letter.pk]))
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize(
    ("name", "chain"),
    [
        ("gzip", "gzip → JSON"),
        ("msgpack", "MessagePack"),
        ("zstd_of_gzip", "zstd → gzip → JSON"),
        ("cbor", "CBOR"),
    ],
)
def test_a_decodable_payload_opens_on_the_decoded_tree_with_a_raw_tab(world, as_user, operator, name, chain):
    body = page(as_user(operator), world.letters[name])
    decoded = body.split('id="view-decoded"')[1].split("</section>")[0]
    assert f"Decoded: <strong>{chain}</strong>" in decoded
    assert '<span class="j-key">&quot;number&quot;</span>' in decoded and CARD in decoded
    assert 'aria-selected="true" data-tab="decoded"' in body
    # the Raw tab still shows the stored bytes, hidden until chosen
    raw = BODIES[name][0]
    assert 'data-tab="hex">Raw</button>' in body
    assert "00000000  " + " ".join(f"{b:02x}" for b in raw[:8]) in body.split('id="view-hex"')[1]
    assert bytes(DeadLetter.objects.get(pk=world.letters[name].pk).payload) == raw  # unchanged


def test_a_payload_that_fails_to_decode_says_why_and_shows_todays_views(world, as_user, operator):
    body = page(as_user(operator), world.letters["truncated"])
    assert "Could not decode" in body and "gzip: the stream ends early (truncated)" in body
    assert 'id="view-decoded"' not in body
    assert 'aria-selected="true" data-tab="hex"' in body  # binary: the raw bytes, as before


def test_plain_json_is_shown_as_before_without_a_decoded_tab(world, as_user, operator):
    body = page(as_user(operator), world.letters["plain"])
    assert 'id="view-decoded"' not in body and "Could not decode" not in body
    assert 'aria-selected="true" data-tab="json"' in body


def test_a_json_path_rule_hides_a_decoded_field_from_a_viewer(world, admin_user, as_user, viewer, operator):
    api = token_client(admin_user)
    rule = {"name": "cards", "kind": "json_path", "pattern": "$.card.number", "replacement": "****"}
    assert api.post("/api/v1/masking-rules/", rule, format="json").status_code == 201
    for name in ("gzip", "msgpack", "cbor"):
        seen = page(as_user(viewer), world.letters[name])
        assert CARD not in seen and "&quot;****&quot;" in seen.split('id="view-decoded"')[1]
        assert "12/29" in seen  # the rest of the record is still shown
        assert CARD in page(as_user(operator), world.letters[name])


def test_the_raw_download_of_an_encoded_payload_with_masked_fields_is_hidden_from_a_viewer(
    world, admin_user, as_user, viewer, operator
):
    api = token_client(admin_user)
    rule = {"name": "cards", "kind": "json_path", "pattern": "card.number", "replacement": "****"}
    assert api.post("/api/v1/masking-rules/", rule, format="json").status_code == 201
    url = reverse("dlq-message-payload", args=[world.letters["gzip"].pk])
    hidden = b"".join(as_user(viewer).get(url))
    assert hidden.startswith(b"[encoded payload hidden by masking rules")
    assert b"".join(as_user(operator).get(url)) == BODIES["gzip"][0]


def test_the_source_payload_format_setting_decodes_a_body_without_a_content_type(
    world, admin_user, as_user, operator
):
    api = token_client(admin_user)
    letter = world.letters["msgpack_bare"]
    assert 'id="view-decoded"' not in page(as_user(operator), letter)  # binary is never guessed
    url = f"/api/v1/sources/{world.source['id']}/"
    response = api.patch(url, {"options": {"payload_format": "msgpack"}}, format="json")
    assert response.status_code == 200, response.content
    assert "Decoded: <strong>MessagePack</strong>" in page(as_user(operator), letter)
    response = api.patch(url, {"options": {"payload_format": "raw"}}, format="json")
    assert response.status_code == 200, response.content
    assert 'id="view-decoded"' not in page(as_user(operator), world.letters["gzip"])
    response = api.patch(url, {"options": {"payload_format": "yaml"}}, format="json")
    assert response.status_code == 400 and "options.payload_format" in response.json()["fields"], (
        response.content
    )


def test_an_export_carries_the_decoded_value_masked_for_a_viewer(
    world, admin_user, as_user, viewer, operator
):
    api = token_client(admin_user)
    rule = {"name": "cards", "kind": "json_path", "pattern": "$.card.number", "replacement": "****"}
    assert api.post("/api/v1/masking-rules/", rule, format="json").status_code == 201
    selection = {"ids": [world.letters["gzip"].pk]}

    def exported(user) -> dict:
        response = as_user(user).post(reverse("dlq-messages-export"), selection)
        (line,) = b"".join(response.streaming_content).decode().splitlines()
        return json.loads(line)

    seen = exported(viewer)
    assert seen["decoded"]["chain"] == "gzip → JSON" and seen["decoded"]["value"]["card"]["number"] == "****"
    assert CARD not in json.dumps(seen)
    assert base64.b64decode(seen["payload_b64"]).startswith(b"[encoded payload hidden by masking rules")
    assert exported(operator)["decoded"]["value"]["card"]["number"] == CARD


def test_the_table_preview_of_an_encoded_payload_hides_it_from_a_viewer_where_rules_apply(
    world, admin_user, as_user, viewer
):
    api = token_client(admin_user)
    rule = {"name": "cards", "kind": "json_path", "pattern": "card.number", "replacement": "****"}
    assert api.post("/api/v1/masking-rules/", rule, format="json").status_code == 201
    body = as_user(viewer).get(reverse("dlq-messages"), {"source": world.source["name"]}).content.decode()
    assert "encoded payload hidden by masking rules" in body
    assert CARD not in body and CARD.encode().hex() not in body and "34313131" not in body
