"""A small Confluent-compatible Schema Registry for the tests (none can be installed here).

It implements what confluent-kafka's serializers and dlqadmin call, with the registry's JSON
shapes and error codes: ``POST /subjects/{s}/versions`` (register; the same schema gets the same
id), ``GET /schemas/ids/{id}`` (``schemaType`` omitted for Avro, as the registry does;
40403 when unknown), ``GET /subjects/{s}/versions/{v|latest}`` (40401 unknown subject, 40402
unknown version), ``GET /subjects/{s}/versions``, ``GET /schemas/ids/{id}/versions`` and
``POST /subjects/{s}`` (look a schema up).
Optional basic auth (40101). ``requests`` records each path asked, so tests can check caching.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class Registry:
    def __init__(self, *, username: str = "", password: str = ""):
        self.schemas: dict[int, dict] = {}  # id -> {"schema", "schemaType", "references"}
        self.subjects: dict[str, list[int]] = {}  # subject -> ids by version
        self.requests: list[str] = []
        self.auth = (username, password) if username else None
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"registry": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Registry:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def register(self, subject: str, body: dict) -> int:
        entry = {
            "schema": body["schema"],
            "schemaType": body.get("schemaType") or "AVRO",
            "references": body.get("references") or [],
        }
        with self.lock:
            for schema_id, known in self.schemas.items():
                if known == entry:
                    break
            else:
                schema_id = len(self.schemas) + 1
                self.schemas[schema_id] = entry
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id

    def shape(self, schema_id: int, **extra) -> dict:
        entry = self.schemas[schema_id]
        out = {**extra, "id": schema_id, "schema": entry["schema"]}
        if entry["schemaType"] != "AVRO":
            out["schemaType"] = entry["schemaType"]
        if entry["references"]:
            out["references"] = entry["references"]
        return out


class _Handler(BaseHTTPRequestHandler):
    registry: Registry

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: int, message: str) -> None:
        self._answer(status, {"error_code": code, "message": message})

    def _authorised(self) -> bool:
        if self.registry.auth is None:
            return True
        expected = "Basic " + base64.b64encode(":".join(self.registry.auth).encode()).decode()
        if self.headers.get("Authorization") == expected:
            return True
        self._error(401, 40101, "Unauthorized")
        return False

    def do_GET(self) -> None:
        reg = self.registry
        reg.requests.append(self.path)
        if not self._authorised():
            return
        parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
        if len(parts) == 4 and parts[:2] == ["schemas", "ids"] and parts[3] == "versions":
            schema_id = int(parts[2]) if parts[2].isdigit() else 0
            if schema_id not in reg.schemas:
                return self._error(404, 40403, f"Schema {schema_id} not found")
            pairs = [
                {"subject": subject, "version": number}
                for subject, ids in reg.subjects.items()
                for number, known in enumerate(ids, 1)
                if known == schema_id
            ]
            return self._answer(200, pairs)
        if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
            schema_id = int(parts[2])
            if schema_id not in reg.schemas:
                return self._error(404, 40403, f"Schema {schema_id} not found")
            shaped = reg.shape(schema_id)
            shaped.pop("id")
            return self._answer(200, shaped)
        if len(parts) >= 3 and parts[0] == "subjects" and parts[2] == "versions":
            versions = reg.subjects.get(parts[1])
            if versions is None:
                return self._error(404, 40401, f"Subject '{parts[1]}' not found.")
            if len(parts) == 3:
                return self._answer(200, list(range(1, len(versions) + 1)))
            wanted = parts[3]
            number = len(versions) if wanted == "latest" else int(wanted) if wanted.isdigit() else 0
            if not 1 <= number <= len(versions):
                return self._error(404, 40402, f"Version {wanted} not found.")
            return self._answer(200, reg.shape(versions[number - 1], subject=parts[1], version=number))
        return self._error(404, 404, "HTTP 404 Not Found")

    def do_POST(self) -> None:
        reg = self.registry
        reg.requests.append("POST " + self.path)
        if not self._authorised():
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
        if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
            schema_id = reg.register(parts[1], body)
            return self._answer(200, {"id": schema_id})
        if len(parts) == 2 and parts[0] == "subjects":
            versions = reg.subjects.get(parts[1])
            if versions is None:
                return self._error(404, 40401, f"Subject '{parts[1]}' not found.")
            for number, schema_id in enumerate(versions, 1):
                if reg.schemas[schema_id]["schema"] == body.get("schema"):
                    return self._answer(200, reg.shape(schema_id, subject=parts[1], version=number))
            return self._error(404, 40403, "Schema not found")
        return self._error(404, 404, "HTTP 404 Not Found")


# ---- records made by confluent-kafka's own serializers ---------------------------------------

ORDER_AVRO = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "namespace": "acme",
        "fields": [
            {"name": "order", "type": "int"},
            {
                "name": "card",
                "type": {"type": "record", "name": "Card", "fields": [{"name": "number", "type": "string"}]},
            },
            {"name": "note", "type": ["null", "string"], "default": None},
        ],
    }
)
ORDER_JSON_SCHEMA = json.dumps(
    {
        "title": "Order",
        "type": "object",
        "properties": {"order": {"type": "integer"}, "sku": {"type": "string"}},
        "required": ["order"],
    }
)


def order_message_class():
    """A Protobuf message class ``acme.Order {int32 order = 1; string sku = 2; Line line = 3}``
    built from a descriptor (no protoc here); ``Line`` is nested, so its index path is [0, 0]."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    types = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name=f"orders_{id(object())}.proto", package="acme", syntax="proto3"
    )
    order = file.message_type.add(name="Order")
    order.field.add(name="order", number=1, type=types.TYPE_INT32, label=types.LABEL_OPTIONAL)
    order.field.add(name="sku", number=2, type=types.TYPE_STRING, label=types.LABEL_OPTIONAL)
    line = order.nested_type.add(name="Line")
    line.field.add(name="qty", number=1, type=types.TYPE_INT32, label=types.LABEL_OPTIONAL)
    order.field.add(
        name="line",
        number=3,
        type=types.TYPE_MESSAGE,
        type_name=".acme.Order.Line",
        label=types.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("acme.Order"))


def serialized(registry_url: str, topic: str) -> dict[str, bytes]:
    """One record per format, each framed by confluent-kafka's own serializer (which registers
    its schema under ``<topic>-value`` in the registry at ``registry_url``)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient  # noqa: TID251
    from confluent_kafka.schema_registry.avro import AvroSerializer  # noqa: TID251
    from confluent_kafka.schema_registry.json_schema import JSONSerializer  # noqa: TID251
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer  # noqa: TID251
    from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: TID251

    client = SchemaRegistryClient({"url": registry_url, "basic.auth.user.info": "sr-user:sr-secret"})
    context = SerializationContext(topic, MessageField.VALUE)
    message_class = order_message_class()
    return {
        "avro": AvroSerializer(client, ORDER_AVRO)(
            {"order": 42, "card": {"number": "4111 1111 1111 1111"}, "note": None}, context
        ),
        "protobuf": ProtobufSerializer(message_class, client, {"use.deprecated.format": False})(
            message_class(order=7, sku="A-1", line=message_class.Line(qty=3)), context
        ),
        "json": JSONSerializer(ORDER_JSON_SCHEMA, client)({"order": 9, "sku": "B-2"}, context),
        "unknown_id": b"\x00\x00\x00\x03\xe7" + b"\x02\x04",  # schema id 999: never registered
    }
