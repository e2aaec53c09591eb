"""The schema store takes .proto source text too: a main file and the files it imports, as a JSON
mapping or a multipart upload (API) or a multi-file input (Schemas page), compiled with protoc
on the server. Payloads are real dead letters (RabbitMQ, rejected into a DLQ, harvested through
the API); a .proto that does not compile is a 400 naming the file and line."""

import base64
import io

import pytest
from django.test import Client
from django.urls import reverse
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from dlqadmin.models import DeadLetter, StoredSchema
from tests.api.test_end_to_end import set_up_rabbitmq_source
from tests.support import rabbit

pytestmark = pytest.mark.django_db

ORDERS = """syntax = "proto3";
package shop;

import "shop/money.proto";
import "google/protobuf/timestamp.proto";

message Order {
  int32 id = 1;
  Money total = 2;
  google.protobuf.Timestamp placed = 3;
}
"""
MONEY = """syntax = "proto3";
package shop;

message Money {
  int64 cents = 1;
  string currency = 2;
}
"""


def order_class():
    """shop.Order compiled here by protoc, as the producer would have it."""
    from dlqadmin.decoding.proto_source import compile_proto_files

    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(
        base64.b64decode(compile_proto_files({"orders.proto": ORDERS, "shop/money.proto": MONEY}))
    )
    pool = descriptor_pool.DescriptorPool()
    for proto in files.file:
        pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))


@pytest.fixture
def world(as_admin):
    order = order_class()(id=7)
    order.total.cents = 1250
    order.total.currency = "EUR"
    order.placed.seconds = 1_700_000_000
    top = rabbit.dead_letter_bodies([(order.SerializeToString(), {"headers": {"type": "order"}})])
    source = set_up_rabbitmq_source(as_admin, top)
    assert as_admin.post(f"/api/v1/sources/{source['id']}/harvest/").json()["inserted"] == 1
    yield {"source": source["id"], "letter": DeadLetter.objects.get(source_id=source["id"])}
    rabbit.delete(top)


EXPECTED = {"id": 7, "total": {"cents": "1250", "currency": "EUR"}, "placed": "2023-11-14T22:13:20Z"}


def decoded(client, letter) -> dict:
    response = client.get(f"/api/v1/messages/{letter.pk}/?decode=true")
    assert response.status_code == 200, response.content
    return response.json()["decoded"]


def test_an_admin_uploads_proto_files_with_their_imports_as_json(world, as_admin, as_operator):
    response = as_admin.post(
        "/api/v1/schemas/",
        {
            "name": "orders",
            "kind": "protobuf",
            "message_type": "shop.Order",
            "proto_files": {"orders.proto": ORDERS, "shop/money.proto": MONEY},
            "sources": [world["source"]],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert "proto_files" not in response.json()
    found = decoded(as_operator, world["letter"])
    assert found["value"] == EXPECTED, found
    assert found["chain"] == "Protobuf shop.Order (orders)"


def test_proto_files_upload_as_multipart_under_their_bare_names(world, as_admin, as_operator):
    main, imported = io.BytesIO(ORDERS.encode()), io.BytesIO(MONEY.encode())
    main.name, imported.name = "orders.proto", "money.proto"  # a browser sends no folders
    response = as_admin.post(
        "/api/v1/schemas/",
        {
            "name": "orders",
            "kind": "protobuf",
            "message_type": "shop.Order",
            "proto_files": [main, imported],
            "sources": [world["source"]],
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json()["sources"] == [world["source"]]
    found = decoded(as_operator, world["letter"])
    assert found["value"] == EXPECTED, found


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"orders.proto": ORDERS.replace("int32 id = 1;", "int32 id = 1"), "shop/money.proto": MONEY},
            'orders.proto:9:3: Expected ";".',
        ),
        ({"orders.proto": ORDERS}, "shop/money.proto: File not found."),
        (
            {"orders.proto": ORDERS.replace("Money total", "Monee total"), "shop/money.proto": MONEY},
            'orders.proto:9:3: "Monee" is not defined.',
        ),
        ({"../etc/x.proto": MONEY}, "a relative path ending in .proto"),
        ({}, "a mapping of .proto file name"),
    ],
)
def test_proto_text_that_does_not_compile_is_a_400_naming_file_and_line(as_admin, files, message):
    response = as_admin.post(
        "/api/v1/schemas/",
        {"name": "bad", "kind": "protobuf", "message_type": "shop.Order", "proto_files": files},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert message in response.json()["fields"]["proto_files"], response.content
    assert not StoredSchema.objects.exists()


def test_proto_files_are_for_protobuf_schemas_only(as_admin):
    response = as_admin.post(
        "/api/v1/schemas/",
        {"name": "bad", "kind": "avro", "proto_files": {"orders.proto": ORDERS}},
        format="json",
    )
    assert response.status_code == 400 and "proto_files" in response.json()["fields"], response.content


def test_an_admin_uploads_proto_files_on_the_schemas_page(world, admin_user, as_operator):
    client = Client()
    client.force_login(admin_user)
    main, imported = io.BytesIO(ORDERS.encode()), io.BytesIO(MONEY.encode())
    main.name, imported.name = "orders.proto", "money.proto"
    fields = {
        "name": "orders",
        "kind": "protobuf",
        "message_type": "shop.Order",
        "sources": [world["source"]],
    }
    response = client.post(reverse("dlq-schemas"), {**fields, "upload": [main, imported]})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert decoded(as_operator, world["letter"])["value"] == EXPECTED
    broken = io.BytesIO(ORDERS.replace("package shop;", "package shop").encode())
    broken.name = "orders.proto"
    response = client.post(reverse("dlq-schemas"), {**fields, "name": "broken", "upload": [broken]})
    assert response.status_code == 400
    assert "orders.proto:4:1: Expected &quot;;&quot;." in response.content.decode()
