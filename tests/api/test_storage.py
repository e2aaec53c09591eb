"""Storage built for the write path (issue 15): the body is written once, a status change rewrites
only the narrow state row, and free text is indexed off the harvest path without a message ever
missing from a search."""

import gzip
import json
import time

import pytest
from django.db import connection

from brokers.base import HarvestedMessage, Origin
from dlqadmin.models import DeadLetter, DeadLetterSearch, DeadLetterState, SearchBacklog, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.dead_letters import dead_letters_discard
from dlqadmin.services.harvest.store import dead_letters_store
from dlqadmin.services.search import BacklogIndexer, search_index_backlog
from tests.api.test_end_to_end import set_up_rabbitmq_source
from tests.conftest import AMQP_URL
from tests.support import rabbit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def source_store():
    conn = connection_create(name="storage", kind="rabbitmq", url=AMQP_URL)
    source = Source.objects.create(connection=conn, name="storage", mode="queue", address="storage.dlq")

    def store(source, position, *, payload, error_message="boom"):
        message = HarvestedMessage(
            position=position, payload=payload, origin=Origin(queue="q"), error_message=error_message
        )
        assert dead_letters_store(source=source, batch=[message]).inserted == 1

    return source, store


def _row_version(table: str, pk: int) -> tuple:
    """Where the row lives and which transaction wrote it: both change when a row is rewritten."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ctid::text, xmin::text FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()


@pytest.fixture
def harvested(as_admin, as_operator):
    """Six genuine RabbitMQ dead letters harvested through the API; payloads "store-<i>"."""
    top = rabbit.dead_letter(6, payload_prefix=b"store-")
    source = set_up_rabbitmq_source(as_admin, top)
    response = as_operator.post(f"/api/v1/sources/{source['id']}/harvest/")
    assert response.status_code == 200 and response.json()["inserted"] == 6, response.content
    yield source
    rabbit.delete(top)


def test_a_status_change_rewrites_the_state_row_never_the_body(harvested, as_operator):
    letter = DeadLetter.objects.filter(source_id=harvested["id"]).order_by("id").first()
    body, state = (
        _row_version("dlqadmin_deadletter", letter.pk),
        _row_version("dlqadmin_deadletterstate", letter.pk),
    )

    assert dead_letters_discard(actor=None, ids=[letter.pk]) == 1

    assert _row_version("dlqadmin_deadletter", letter.pk) == body
    assert _row_version("dlqadmin_deadletterstate", letter.pk) != state
    detail = as_operator.get(f"/api/v1/messages/{letter.pk}/").json()
    assert detail["status"] == "discarded" and detail["payload_text"].startswith("store-")


def test_a_harvested_message_is_searchable_once_indexed_and_the_dashboard_says_so_before(
    harvested, as_operator, client, operator
):
    ids = set(DeadLetter.objects.filter(source_id=harvested["id"]).values_list("pk", flat=True))
    assert set(SearchBacklog.objects.values_list("dead_letter_id", flat=True)) >= ids

    def found(q: str) -> list[str]:
        response = as_operator.get("/api/v1/messages/", {"q": q, "source": harvested["name"]})
        assert response.status_code == 200, response.content
        ids = [m["id"] for m in response.json()["results"]]
        return sorted(
            bytes(p).decode() for p in DeadLetter.objects.filter(pk__in=ids).values_list("payload", flat=True)
        )

    client.force_login(operator)
    page = client.get("/messages/", {"q": "store-3", "source": harvested["name"]}).content.decode()
    assert "not searchable yet" in page and found("store-3") == []  # stored, not indexed yet
    assert search_index_backlog() >= 6
    assert not SearchBacklog.objects.filter(dead_letter_id__in=ids).exists()
    assert DeadLetterSearch.objects.filter(dead_letter_id__in=ids).count() == 6
    assert found("store-3") == ["store-3"]
    assert len(found("store-")) == 6
    assert found("STORE-3") == []  # the payload matches byte for byte
    page = client.get("/messages/", {"q": "store-3", "source": harvested["name"]}).content.decode()
    assert "not searchable yet" not in page


def test_free_text_covers_the_payload_prefix_and_error_text_only(source_store):
    source, store = source_store
    near, far = b"x" * 100 + b"needle-near", b"x" * 5000 + b"needle-far"
    store(source, "near", payload=near)
    store(source, "far", payload=far)
    store(source, "escaped", payload=b"\x80abc")  # escape-encoded as "\200abc"
    store(source, "error", payload=b"{}", error_message="Customer 17 not FOUND")
    search_index_backlog()
    assert not SearchBacklog.objects.exists()

    def positions(q: str) -> set[str]:
        from dlqadmin.selectors import DeadLetterFilter

        return set(DeadLetterFilter(q=q).apply(DeadLetter.objects.all()).values_list("position", flat=True))

    assert positions("needle-near") == {"near"}
    assert positions("needle-far") == set()  # beyond the first 4 KiB
    assert positions("not found") == {"error"}  # error text: any case
    assert positions("200abc") == set()  # no match across a byte's escape
    assert positions("abc") == {"escaped"}


def test_the_harvesters_indexer_thread_empties_the_backlog(source_store):
    source, store = source_store
    for i in range(25):
        store(source, f"p{i}", payload=b"indexed-%d" % i)
    assert SearchBacklog.objects.count() == 25
    indexer = BacklogIndexer(interval=0.1).start()
    try:
        deadline = time.monotonic() + 10
        while SearchBacklog.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        indexer.stop()
    assert not SearchBacklog.objects.exists()
    assert DeadLetterSearch.objects.count() == 25


def test_every_body_has_exactly_one_state_row(harvested):
    bodies = set(DeadLetter.objects.values_list("pk", flat=True))
    assert bodies and set(DeadLetterState.objects.values_list("pk", flat=True)) == bodies


def test_a_compressed_payload_is_searched_by_its_decoded_text(as_admin, as_operator):
    """Issue 17: a gzip JSON order (real RabbitMQ, harvested through the API) is found by a value
    inside it once indexed; its stored bytes stay the compressed ones."""
    order = {"order": "ord-77", "customer": {"email": "zed@example.com"}}
    body = gzip.compress(json.dumps(order).encode())
    top = rabbit.dead_letter_bodies([(body, {"content_type": "application/json"})])
    try:
        source = set_up_rabbitmq_source(as_admin, top)
        assert as_operator.post(f"/api/v1/sources/{source['id']}/harvest/").json()["inserted"] == 1
        assert search_index_backlog() >= 1

        def found(q: str) -> list[int]:
            response = as_operator.get("/api/v1/messages/", {"q": q, "source": source["name"]})
            assert response.status_code == 200, response.content
            return [m["id"] for m in response.json()["results"]]

        (letter,) = DeadLetter.objects.filter(source_id=source["id"])
        assert found("zed@example.com") == [letter.pk]
        assert found("ord-77") == [letter.pk]  # digits: no byte check against the gzip body
        assert found("ord-78") == []
        assert bytes(letter.payload) == body
    finally:
        rabbit.delete(top)
