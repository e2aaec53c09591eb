"""Confluent wire-format dead letters (Avro, Protobuf, JSON Schema) decoded with the schemas of
the connection's Schema Registry. The records are framed by confluent-kafka's own serializers,
produced to a real Kafka dead-letter topic, harvested over the API, and read back decoded on the
message page and through ``?decode=true``. The registry is a small server started by the test
(tests/support/schema_registry.py: the registry's endpoints, JSON shapes and error codes)."""

import pytest
from django.test import Client
from django.urls import reverse

from dlqadmin.models import Connection, DeadLetter
from tests.conftest import KAFKA_BOOTSTRAP, unique
from tests.support import kafka
from tests.support.schema_registry import Registry, serialized

pytestmark = pytest.mark.django_db

CARD = "4111 1111 1111 1111"


@pytest.fixture
def registry():
    with Registry(username="sr-user", password="sr-secret") as reg:
        yield reg


@pytest.fixture
def world(registry, as_admin):
    topic = unique("orders-dlt")
    kafka.create_topics(topic)
    records = serialized(registry.url, topic)
    kafka.produce(topic, [kafka.Record(value=value) for value in records.values()])
    response = as_admin.post(
        "/api/v1/connections/",
        {
            "name": f"kafka-{topic}",
            "kind": "kafka",
            "url": KAFKA_BOOTSTRAP,
            "schema_registry_url": registry.url,
            "schema_registry_username": "sr-user",
            "schema_registry_secret": "sr-secret",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    connection = response.json()
    source = as_admin.post(
        "/api/v1/sources/",
        {
            "name": topic,
            "connection": connection["id"],
            "mode": "topic",
            "address": topic,
            "options": {"group_id": f"{topic}-grp", "idle_timeout": 2.0},
        },
        format="json",
    )
    assert source.status_code == 201, source.content
    harvested = as_admin.post(f"/api/v1/sources/{source.json()['id']}/harvest/")
    assert harvested.status_code == 200 and harvested.json()["inserted"] == len(records), harvested.content
    rows = DeadLetter.objects.filter(source_id=source.json()["id"])
    rows = sorted(rows, key=lambda r: int(r.position.split("@")[0].rsplit("/", 1)[1]))  # DLT offset order
    assert [bytes(r.payload) for r in rows] == list(records.values())
    return {"connection": connection, "topic": topic, "letters": dict(zip(records, rows, strict=True))}


def decoded(client, letter) -> dict:
    response = client.get(f"/api/v1/messages/{letter.pk}/?decode=true")
    assert response.status_code == 200, response.content
    return response.json()["decoded"]


def test_the_registry_secret_is_write_only_and_stored_encrypted(world, as_admin):
    connection = world["connection"]
    assert connection["has_schema_registry_secret"] is True and "schema_registry_secret" not in connection
    assert "sr-secret" not in str(as_admin.get(f"/api/v1/connections/{connection['id']}/").json())
    stored = Connection.objects.get(pk=connection["id"])
    assert (
        stored.schema_registry_secret_encrypted and "sr-secret" not in stored.schema_registry_secret_encrypted
    )
    assert stored.schema_registry_secret == "sr-secret"


@pytest.mark.parametrize(
    ("name", "value", "label"),
    [
        ("avro", {"order": 42, "card": {"number": CARD}, "note": None}, "Avro acme.Order ("),
        ("protobuf", {"order": 7, "sku": "A-1", "line": {"qty": 3}}, "Protobuf acme.Order ("),
        ("json", {"order": 9, "sku": "B-2"}, "JSON Schema Order ("),
    ],
)
def test_each_wire_format_record_decodes_with_its_registered_schema(world, as_operator, name, value, label):
    found = decoded(as_operator, world["letters"][name])
    assert found["value"] == value and found["error"] == ""
    assert found["chain"].startswith(label) and f"{world['topic']}-value v" in found["chain"]


def test_the_message_page_shows_the_decoded_record_and_the_raw_bytes(world, operator):
    client = Client()
    client.force_login(operator)
    body = client.get(reverse("dlq-message", args=[world["letters"]["avro"].pk])).content.decode()
    assert "Decoded: <strong>Avro acme.Order (" in body and CARD in body.split('id="view-decoded"')[1]
    assert 'data-tab="hex">Raw</button>' in body and "00000000  00 00 00 00" in body


def test_schemas_are_fetched_once_per_id(world, as_operator, registry):
    letter = world["letters"]["avro"]
    decoded(as_operator, letter)
    asked = [path for path in registry.requests if path.startswith("/schemas/ids/")]
    decoded(as_operator, letter)
    assert [path for path in registry.requests if path.startswith("/schemas/ids/")] == asked


def test_an_unknown_schema_id_says_so_and_the_raw_views_stay(world, as_operator, operator):
    found = decoded(as_operator, world["letters"]["unknown_id"])
    assert not found["has_value"] and "schema id 999" in found["error"] and "40403" in found["error"]
    client = Client()
    client.force_login(operator)
    body = client.get(reverse("dlq-message", args=[world["letters"]["unknown_id"].pk])).content.decode()
    assert "Could not decode" in body and "unknown schema id" in body and 'id="view-hex"' in body


def test_an_unreachable_registry_says_so(world, as_admin, as_operator):
    url = f"/api/v1/connections/{world['connection']['id']}/"
    response = as_admin.patch(url, {"schema_registry_url": "http://127.0.0.1:9"}, format="json")
    assert response.status_code == 200, response.content
    found = decoded(as_operator, world["letters"]["json"])
    assert not found["has_value"] and "registry unreachable" in found["error"]


def test_a_bad_registry_url_is_a_400(world, as_admin):
    url = f"/api/v1/connections/{world['connection']['id']}/"
    for bad in ("ftp://registry", "http://user:pw@registry:8081", "registry:8081"):
        response = as_admin.patch(url, {"schema_registry_url": bad}, format="json")
        assert response.status_code == 400 and "schema_registry_url" in response.json()["fields"], bad


def test_a_masking_rule_hides_a_field_of_a_decoded_avro_record(world, as_admin, as_viewer, as_operator):
    rule = {"name": "cards", "kind": "json_path", "pattern": "$.card.number", "replacement": "****"}
    assert as_admin.post("/api/v1/masking-rules/", rule, format="json").status_code == 201
    letter = world["letters"]["avro"]
    assert decoded(as_viewer, letter)["value"]["card"] == {"number": "****"}
    assert CARD not in str(as_viewer.get(f"/api/v1/messages/{letter.pk}/?decode=true").json())
    assert decoded(as_operator, letter)["value"]["card"] == {"number": CARD}


def latest_payload(letter) -> bytes:
    from dlqadmin.models import DeadLetterRevision

    return bytes(DeadLetterRevision.objects.filter(dead_letter=letter).latest("id").payload)


def test_protobuf_and_json_schema_edits_are_checked_and_read_by_the_consumers_deserializers(
    world, as_operator, registry
):
    from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: TID251
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer  # noqa: TID251
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer  # noqa: TID251
    from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: TID251

    from tests.support.schema_registry import ORDER_JSON_SCHEMA, order_message_class

    letters, context = world["letters"], SerializationContext(world["topic"], MessageField.VALUE)
    url = "/api/v1/messages/{}/"

    response = as_operator.patch(
        url.format(letters["protobuf"].pk), {"payload_json": {"order": "x"}}, format="json"
    )
    assert response.status_code == 400 and "payload_json.order" in response.json()["fields"], response.content
    edited = {"order": 8, "sku": "A-2", "line": {"qty": 4}}
    response = as_operator.patch(url.format(letters["protobuf"].pk), {"payload_json": edited}, format="json")
    assert response.status_code == 200, response.content
    stored = latest_payload(letters["protobuf"])
    assert stored[:5] == bytes(letters["protobuf"].payload)[:5]
    message_class = order_message_class()
    read = ProtobufDeserializer(message_class, {"use.deprecated.format": False})(stored, context)
    assert (read.order, read.sku, read.line.qty) == (8, "A-2", 4)

    response = as_operator.patch(url.format(letters["json"].pk), {"payload_json": {"sku": 5}}, format="json")
    assert response.status_code == 400, response.content
    assert {"payload_json.sku", "payload_json"} <= set(response.json()["fields"])
    response = as_operator.patch(
        url.format(letters["json"].pk), {"payload_json": {"order": 10, "sku": "C"}}, format="json"
    )
    assert response.status_code == 200, response.content
    client = SchemaRegistryClient({"url": registry.url, "basic.auth.user.info": "sr-user:sr-secret"})
    read = JSONDeserializer(ORDER_JSON_SCHEMA, schema_registry_client=client)(
        latest_payload(letters["json"]), context
    )
    assert read == {"order": 10, "sku": "C"}


def test_an_edit_can_be_reencoded_with_a_later_version_of_its_subject(world, as_operator, registry):
    import json

    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: TID251
    from confluent_kafka.schema_registry.avro import AvroDeserializer  # noqa: TID251
    from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: TID251

    from tests.support.schema_registry import ORDER_AVRO

    client = SchemaRegistryClient({"url": registry.url, "basic.auth.user.info": "sr-user:sr-secret"})
    evolved = json.loads(ORDER_AVRO)
    evolved["fields"].append({"name": "channel", "type": "string", "default": "web"})
    subject = f"{world['topic']}-value"
    new_id = client.register_schema(subject, Schema(json.dumps(evolved), "AVRO"))
    version = client.get_latest_version(subject).version
    letter, url = world["letters"]["avro"], f"/api/v1/messages/{world['letters']['avro'].pk}/"
    value = {"order": 42, "card": {"number": CARD}, "note": None, "channel": "app"}

    response = as_operator.patch(url, {"payload_json": value}, format="json")  # not in the old schema
    assert response.status_code == 400 and "payload_json.channel" in response.json()["fields"]
    for wrong, why in ((99, "40402"), (2, "Protobuf")):
        response = as_operator.patch(url, {"payload_json": value, "schema_version": wrong}, format="json")
        assert response.status_code == 400 and why in response.json()["fields"]["schema_version"], (
            response.content
        )
    response = as_operator.patch(url, {"payload_json": value, "schema_version": version}, format="json")
    assert response.status_code == 200, response.content
    stored = latest_payload(letter)
    assert stored[:5] == b"\x00" + new_id.to_bytes(4, "big")
    read = AvroDeserializer(client)(stored, SerializationContext(world["topic"], MessageField.VALUE))
    assert read == value
