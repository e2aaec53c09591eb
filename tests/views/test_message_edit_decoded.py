"""Edit and redrive on the dashboard for a compressed or binary-encoded message: the edit page
offers the decoded JSON, the review shows the change of the decoded values, and the saved
revision is encoded and compressed as the original was. Real RabbitMQ dead letters, harvested
over the API (tests/support/decoded.py)."""

import gzip
import html
import json
import re

import msgpack
import pytest
from django.urls import reverse

from dlqadmin.models import DeadLetterRevision
from tests.api.conftest import token_client
from tests.support import rabbit
from tests.support.decoded import ORDER, harvest_world

pytestmark = pytest.mark.django_db

EDITED = {**ORDER, "order": 43}


@pytest.fixture
def world(admin_user):
    built = harvest_world(token_client(admin_user))
    yield built
    rabbit.delete(built.top)


def post(client, letter, payload: str, step: str, reviewed: str = ""):
    return client.post(
        reverse("dlq-message-edit", args=[letter.pk]),
        {
            "payload_encoding": "decoded",
            "payload": payload,
            "headers": "[]",
            "step": step,
            "reviewed": reviewed,
        },
    )


@pytest.mark.parametrize(
    ("name", "read"), [("gzip", lambda b: json.loads(gzip.decompress(b))), ("msgpack", msgpack.unpackb)]
)
def test_a_decoded_message_is_edited_as_json_and_saved_encoded_as_before(
    world, as_user, operator, name, read
):
    client = as_user(operator)
    letter = world.letters[name]
    page = client.get(reverse("dlq-message-edit", args=[letter.pk])).content.decode()
    assert '<option value="decoded" selected>' in page
    shown = html.unescape(page.split('name="payload"')[1].split(">", 1)[1].split("</textarea>")[0])
    assert json.loads(shown) == ORDER
    edited = json.dumps(EDITED, indent=2)
    review = post(client, letter, edited, "review").content.decode()
    assert '<span class="d-add">+  &quot;order&quot;: 43,</span>' in review
    digest = re.search(r'name="reviewed" value="([0-9a-f]+)"', review).group(1)
    response = post(client, letter, edited, "save", digest)
    assert response.status_code == 302, response.content.decode()[:3000]
    revision = DeadLetterRevision.objects.get(dead_letter=letter)
    assert read(bytes(revision.payload)) == EDITED


def test_an_edit_that_is_not_json_is_a_form_error(world, as_user, operator):
    response = post(as_user(operator), world.letters["gzip"], "{nope", "review")
    assert response.status_code == 400 and "not JSON" in response.content.decode()
    assert not DeadLetterRevision.objects.exists()


def test_plain_json_is_edited_as_before(world, as_user, operator):
    page = (
        as_user(operator).get(reverse("dlq-message-edit", args=[world.letters["plain"].pk])).content.decode()
    )
    assert 'value="decoded"' not in page
