"""The Confluent framing and record reading without a registry (dlqadmin.decoding.confluent):
message-index varints as confluent-kafka writes them, truncated and foreign records."""

import io
import json

import fastavro
import pytest

from dlqadmin.decoding import confluent
from dlqadmin.decoding.chain import decode

AVRO = {"type": "record", "name": "Order", "namespace": "acme", "fields": [{"name": "order", "type": "int"}]}
SCHEMA = confluent.Schema(kind="avro", text=json.dumps(AVRO), label="orders-value v1", schema_id=7)


def avro_record(value: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(AVRO), value)
    return b"\x00" + (7).to_bytes(4, "big") + out.getvalue()


def lookup(schema_id):
    if schema_id != 7:
        raise confluent.SchemaUnavailable("unknown schema id (registry error 40403: Schema not found)")
    return SCHEMA


def test_a_framed_avro_record_decodes_and_names_its_schema():
    found = decode(avro_record({"order": 42}), schemas=lookup)
    assert found.value == {"order": 42}
    assert found.chain == "Avro acme.Order (orders-value v1, schema id 7)" and found.record.schema is SCHEMA


def test_a_truncated_record_and_leftover_bytes_are_errors():
    data = avro_record({"order": 123456})
    assert "truncated" in decode(data[:-1], schemas=lookup).error
    assert "left after the record" in decode(data + b"\x01", schemas=lookup).error


def test_an_unknown_schema_id_is_an_error_naming_the_id():
    found = decode(b"\x00\x00\x00\x00\x09\x02", schemas=lookup)
    assert not found.has_value and found.error.startswith(
        "Confluent wire format, schema id 9: unknown schema id"
    )


def test_without_a_registry_a_zero_byte_is_not_taken_for_the_framing():
    assert decode(avro_record({"order": 1})).record is None


@pytest.mark.parametrize("indexes", [[0], [1], [0, 2], [3, 1, 4]])
def test_message_indexes_round_trip_as_confluent_kafka_writes_them(indexes):
    written = confluent._write_indexes(indexes)
    assert confluent._read_indexes(written + b"rest") == (indexes, b"rest")
    if indexes == [0]:
        assert written == b"\x00"  # the one-byte shorthand for the first message


def test_an_edited_avro_record_reencodes_with_the_same_schema_id_or_says_which_field_is_wrong():
    record = decode(avro_record({"order": 42}), schemas=lookup).record
    assert confluent.encode(record, {"order": 43}) == avro_record({"order": 43})
    with pytest.raises(confluent.RecordError) as refused:
        confluent.encode(record, {"order": "forty-three"})
    assert "order" in refused.value.fields


RICH = {
    "type": "record",
    "name": "Payment",
    "namespace": "acme",
    "fields": [
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "blob", "type": "bytes"},
        {"name": "tags", "type": {"type": "map", "values": "string"}},
        {"name": "maybe", "type": ["null", "bytes"], "default": None},
    ],
}


def test_an_unchanged_record_with_logical_types_and_bytes_reencodes_to_the_same_bytes():
    import datetime as dt
    import decimal
    import uuid

    schema = confluent.Schema(kind="avro", text=json.dumps(RICH), schema_id=9)
    value = {
        "at": dt.datetime(2026, 12, 5, 11, 0, tzinfo=dt.UTC),
        "day": dt.date(2026, 12, 5),
        "amount": decimal.Decimal("12.50"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "blob": b"\x00\xff",
        "tags": {"k": "v"},
        "maybe": b"\x01",
    }
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(RICH), value)
    data = b"\x00" + (9).to_bytes(4, "big") + out.getvalue()
    found = decode(data, schemas=lambda _id: schema)
    assert found.value["blob"] == {"$bytes": "AP8="} and found.value["amount"] == "12.50"
    assert found.value["at"].startswith("2026-12-05T11:00")
    assert confluent.encode(found.record, found.value) == data
    with pytest.raises(confluent.RecordError) as refused:
        confluent.encode(found.record, {**found.value, "day": "not a date", "tags": {"k": 5}})
    assert set(refused.value.fields) == {"day", "tags.k"}
