"""The schema store: an admin uploads an .avsc, a Protobuf descriptor set or a JSON Schema (API
and dashboard), binds it to a source, optionally per header value, and the source's bare
(unframed) payloads decode with it. The dead letters are real: published to RabbitMQ with a
type header, rejected into a DLQ and harvested over the API."""

import base64
import gzip
import io
import json

import fastavro
import pytest
from django.test import Client
from django.urls import reverse
from google.protobuf import descriptor_pb2

from dlqadmin.models import AuditEvent, DeadLetter, StoredSchema
from tests.api.test_end_to_end import set_up_rabbitmq_source
from tests.support import rabbit
from tests.support.schema_registry import ORDER_AVRO, ORDER_JSON_SCHEMA, order_message_class

pytestmark = pytest.mark.django_db

CARD = "4111 1111 1111 1111"
AVRO_VALUE = {"order": 42, "card": {"number": CARD}, "note": "rush"}


def avro_bytes(value: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(json.loads(ORDER_AVRO)), value)
    return out.getvalue()


def descriptor_set(message_class) -> str:
    proto = descriptor_pb2.FileDescriptorProto()
    message_class.DESCRIPTOR.file.CopyToProto(proto)
    return base64.b64encode(descriptor_pb2.FileDescriptorSet(file=[proto]).SerializeToString()).decode()


@pytest.fixture
def world(as_admin):
    message_class = order_message_class()
    bodies = {
        "avro": (avro_bytes(AVRO_VALUE), {"headers": {"type": "order.v1"}}),
        "avro_gzip": (gzip.compress(avro_bytes(AVRO_VALUE)), {"headers": {"type": "order.v1"}}),
        "protobuf": (
            message_class(order=7, sku="A-1").SerializeToString(),
            {"headers": {"type": "order.pb"}},
        ),
        "json": (
            b'{"order": "nine"}',
            {"headers": {"type": "order.json"}, "content_type": "application/json"},
        ),
        "other": (b"\xff\x01\x02", {"headers": {"type": "unknown"}}),
    }
    top = rabbit.dead_letter_bodies(list(bodies.values()))
    source = set_up_rabbitmq_source(as_admin, top)
    assert as_admin.post(f"/api/v1/sources/{source['id']}/harvest/").json()["inserted"] == len(bodies)
    rows = DeadLetter.objects.filter(source_id=source["id"]).order_by("id")
    yield {"source": source, "letters": dict(zip(bodies, rows, strict=True)), "message_class": message_class}
    rabbit.delete(top)


def upload(client, **body):
    return client.post("/api/v1/schemas/", body, format="json")


def decoded(client, letter) -> dict:
    response = client.get(f"/api/v1/messages/{letter.pk}/?decode=true")
    assert response.status_code == 200, response.content
    return response.json()["decoded"]


def test_uploaded_schemas_decode_the_bare_payloads_they_are_bound_to(world, as_admin, as_operator):
    source = world["source"]["id"]
    response = upload(
        as_admin,
        name="orders-avsc",
        kind="avro",
        definition=ORDER_AVRO,
        sources=[source],
        header="type",
        header_value="order.v1",
    )
    assert response.status_code == 201, response.content
    response = upload(
        as_admin,
        name="orders-proto",
        kind="protobuf",
        definition=descriptor_set(world["message_class"]),
        message_type="acme.Order",
        sources=[source],
        header="type",
        header_value="order.pb",
    )
    assert response.status_code == 201, response.content
    response = upload(
        as_admin,
        name="orders-json",
        kind="json_schema",
        definition=ORDER_JSON_SCHEMA,
        sources=[source],
        header="type",
        header_value="order.json",
    )
    assert response.status_code == 201, response.content
    letters = world["letters"]
    found = decoded(as_operator, letters["avro"])
    assert found["value"] == AVRO_VALUE and found["chain"] == "Avro acme.Order (orders-avsc)"
    found = decoded(as_operator, letters["avro_gzip"])
    assert found["value"] == AVRO_VALUE and found["chain"] == "gzip → Avro acme.Order (orders-avsc)"
    found = decoded(as_operator, letters["protobuf"])
    assert (
        found["value"] == {"order": 7, "sku": "A-1"}
        and found["chain"] == "Protobuf acme.Order (orders-proto)"
    )
    found = decoded(as_operator, letters["json"])
    assert found["value"] == {"order": "nine"} and found["steps"] == ["json_schema"]
    # a header value no schema is bound to: shown as before
    assert decoded(as_operator, letters["other"])["steps"] == []
    assert AuditEvent.objects.filter(action="schema.create").count() == 3


def test_a_schema_that_does_not_fit_the_payload_says_why(world, as_admin, as_operator):
    response = upload(
        as_admin, name="any", kind="avro", definition=ORDER_AVRO, sources=[world["source"]["id"]]
    )
    assert response.status_code == 201, response.content
    found = decoded(as_operator, world["letters"]["other"])
    assert not found["has_value"] and found["error"].startswith("schema any: Avro")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "avro", "definition": "{not json"}, "definition"),
        (
            {
                "kind": "avro",
                "definition": '{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}',
            },
            "definition",
        ),
        ({"kind": "json_schema", "definition": '{"type": 5}'}, "definition"),
        ({"kind": "protobuf", "definition": "bm90IGEgc2V0"}, "message_type"),
        ({"kind": "protobuf", "definition": "@@@", "message_type": "acme.Order"}, "definition"),
        ({"kind": "avro", "definition": ORDER_AVRO, "header_value": "x"}, "header"),
    ],
)
def test_a_schema_that_does_not_load_is_a_400(as_admin, body, field):
    response = upload(as_admin, name="bad", **body)
    assert response.status_code == 400 and field in response.json()["fields"], response.content
    assert not StoredSchema.objects.exists()


def test_only_admins_upload_schemas(as_viewer, as_operator):
    for client in (as_viewer, as_operator):
        assert upload(client, name="x", kind="avro", definition=ORDER_AVRO).status_code == 403
        assert client.get("/api/v1/schemas/").status_code == 200


def test_an_admin_uploads_an_avsc_file_on_the_schemas_page(world, admin_user, viewer, as_operator):
    client = Client()
    client.force_login(admin_user)
    avsc = io.BytesIO(ORDER_AVRO.encode())
    avsc.name = "order.avsc"
    response = client.post(
        reverse("dlq-schemas"),
        {
            "name": "orders",
            "kind": "avro",
            "upload": avsc,
            "sources": [world["source"]["id"]],
            "header": "type",
            "header_value": "order.v1",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert decoded(as_operator, world["letters"]["avro"])["value"] == AVRO_VALUE
    body = client.get(reverse("dlq-schemas")).content.decode()
    assert "orders" in body and "type = order.v1" in body
    bad = io.BytesIO(b"{broken")
    bad.name = "bad.avsc"
    response = client.post(reverse("dlq-schemas"), {"name": "broken", "kind": "avro", "upload": bad})
    assert response.status_code == 400 and "Avro schema does not parse" in response.content.decode()
    reader = Client()
    reader.force_login(viewer)
    body = reader.get(reverse("dlq-schemas")).content.decode()
    assert "orders" in body and "Upload a schema" not in body
