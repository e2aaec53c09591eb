"""Edit and redrive a decoded message over the API: PATCH payload_json is validated against the
message's schema (field errors are a 400), re-encoded as the original was (same schema id, same
compression) and kept as a revision; the redriven record is read by the consumer's own
deserializer (confluent-kafka's AvroDeserializer). Real RabbitMQ, Kafka and harvests."""

import gzip
import json

import msgpack
import pytest

from dlqadmin.models import DeadLetter, DeadLetterRevision
from dlqadmin.services.redrive.worker import redrive_job_step
from tests.api.conftest import token_client
from tests.conftest import KAFKA_BOOTSTRAP, unique
from tests.support import kafka, rabbit
from tests.support.decoded import ORDER, harvest_world
from tests.support.schema_registry import Registry, serialized

pytestmark = pytest.mark.django_db

EDITED = {**ORDER, "order": 43, "lines": [{"sku": "A-1", "qty": 3}]}


@pytest.fixture
def rabbit_world(admin_user):
    built = harvest_world(token_client(admin_user))
    yield built
    rabbit.delete(built.top)


def patch(client, letter, body):
    return client.patch(f"/api/v1/messages/{letter.pk}/", body, format="json")


def latest_payload(letter) -> bytes:
    return bytes(DeadLetterRevision.objects.filter(dead_letter=letter).latest("id").payload)


def test_a_gzip_json_edit_is_recompressed(rabbit_world, as_operator):
    letter = rabbit_world.letters["gzip"]
    response = patch(as_operator, letter, {"payload_json": EDITED, "note": "fix qty"})
    assert response.status_code == 200, response.content
    stored = latest_payload(letter)
    assert stored[:2] == b"\x1f\x8b" and json.loads(gzip.decompress(stored)) == EDITED
    assert bytes(DeadLetter.objects.get(pk=letter.pk).payload) == bytes(letter.payload)  # original kept
    # the next edit starts from the revision, and is gzip again
    assert patch(as_operator, letter, {"payload_json": ORDER}).status_code == 200
    assert json.loads(gzip.decompress(latest_payload(letter))) == ORDER


def test_a_messagepack_edit_is_messagepack_again(rabbit_world, as_operator):
    letter = rabbit_world.letters["msgpack"]
    assert patch(as_operator, letter, {"payload_json": EDITED}).status_code == 200
    assert msgpack.unpackb(latest_payload(letter)) == EDITED


def test_payload_json_for_a_message_that_does_not_decode_is_a_400(rabbit_world, as_operator):
    response = patch(as_operator, rabbit_world.letters["truncated"], {"payload_json": EDITED})
    assert response.status_code == 400 and "did not decode" in response.json()["fields"]["payload_json"]
    response = patch(
        as_operator, rabbit_world.letters["gzip"], {"payload_json": EDITED, "payload_text": "{}"}
    )
    assert response.status_code == 400, response.content


def test_a_viewer_cannot_edit(rabbit_world, as_viewer):
    assert patch(as_viewer, rabbit_world.letters["gzip"], {"payload_json": EDITED}).status_code == 403


def test_an_edited_avro_record_is_redriven_with_its_schema_id_and_read_by_the_consumers_deserializer(
    as_admin, as_operator
):
    from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: TID251
    from confluent_kafka.schema_registry.avro import AvroDeserializer  # noqa: TID251
    from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: TID251

    with Registry(username="sr-user", password="sr-secret") as registry:
        original, dlt = unique("orders"), unique("orders-dlt")
        kafka.create_topics(original, dlt)
        record = serialized(registry.url, original)["avro"]
        kafka.produce(dlt, [kafka.Record(value=record, headers=kafka.spring_headers(original, 0, 5))])
        connection = as_admin.post(
            "/api/v1/connections/",
            {
                "name": f"kafka-{dlt}",
                "kind": "kafka",
                "url": KAFKA_BOOTSTRAP,
                "schema_registry_url": registry.url,
                "schema_registry_username": "sr-user",
                "schema_registry_secret": "sr-secret",
            },
            format="json",
        ).json()
        source = as_admin.post(
            "/api/v1/sources/",
            {
                "name": dlt,
                "connection": connection["id"],
                "mode": "topic",
                "address": dlt,
                "options": {"group_id": f"{dlt}-grp", "idle_timeout": 2.0},
            },
            format="json",
        ).json()
        assert as_admin.post(f"/api/v1/sources/{source['id']}/harvest/").json()["inserted"] == 1
        letter = DeadLetter.objects.get(source_id=source["id"])
        value = as_operator.get(f"/api/v1/messages/{letter.pk}/?decode=true").json()["decoded"]["value"]

        # an edit that does not fit the schema is refused, field by field
        response = patch(as_operator, letter, {"payload_json": {**value, "order": "forty-three"}})
        assert response.status_code == 400, response.content
        assert "payload_json.order" in response.json()["fields"]
        response = patch(as_operator, letter, {"payload_json": {**value, "card": {"number": 5}}})
        assert "payload_json.card.number" in response.json()["fields"], response.content
        response = patch(as_operator, letter, {"payload_json": {**value, "extra": 1}})
        assert "payload_json.extra" in response.json()["fields"], response.content

        edited = {**value, "order": 43, "note": "fixed"}
        assert patch(as_operator, letter, {"payload_json": edited}).status_code == 200
        assert latest_payload(letter)[:5] == record[:5]  # magic byte and the same schema id

        job = as_operator.post("/api/v1/redrives/", {"ids": [letter.pk]}, format="json")
        assert job.status_code == 201, job.content
        for _ in range(20):
            if not redrive_job_step(job_id=job.json()["id"]).more:
                break
        (arrived,) = kafka.read_topic(original, 1)
        client = SchemaRegistryClient({"url": registry.url, "basic.auth.user.info": "sr-user:sr-secret"})
        read = AvroDeserializer(client)(arrived.value, SerializationContext(original, MessageField.VALUE))
        assert read == edited
