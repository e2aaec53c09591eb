"""The pure decoding chain (dlqadmin.decoding): compressions by magic bytes, nested ones,
MessagePack and CBOR when the content type or the source's setting says so, and errors that say
why. The compressed bodies are made by the same libraries producers use (gzip from the standard
library, cramjam's framed snappy / lz4 and zstd frames)."""

import datetime as dt
import gzip
import json

import cbor2
import cramjam
import msgpack
import pytest

from dlqadmin.decoding import compression, formats
from dlqadmin.decoding.chain import decode

ORDER = {"order": 42, "card": {"number": "4111 1111 1111 1111"}, "lines": [{"sku": "A-1"}]}
BODY = json.dumps(ORDER).encode()


@pytest.mark.parametrize(
    ("compress", "label"),
    [
        (gzip.compress, "gzip"),
        (lambda b: bytes(cramjam.zstd.compress(b)), "zstd"),
        (lambda b: bytes(cramjam.snappy.compress(b)), "snappy (framed)"),
        (lambda b: bytes(cramjam.lz4.compress(b)), "lz4 (framed)"),
    ],
)
def test_it_decompresses_each_compression_by_its_magic_bytes(compress, label):
    data = compress(BODY)
    before = bytes(data)
    found = decode(data)
    assert found.has_value and found.value == ORDER
    assert found.chain == f"{label} → JSON" and found.changes_the_view and not found.error
    assert data == before  # the input is never altered


def test_nested_compressions_unwrap_outermost_first():
    data = bytes(cramjam.zstd.compress(gzip.compress(BODY)))
    found = decode(data)
    assert found.compressions == ["zstd", "gzip"] and found.value == ORDER


def test_a_truncated_gzip_body_says_so_and_has_no_value():
    found = decode(gzip.compress(BODY)[:20])
    assert not found.has_value and "truncated" in found.error and found.error.startswith("gzip")


def test_a_decompression_bomb_stops_at_the_limit():
    found = decode(gzip.compress(b"\x00" * (compression.MAX_OUTPUT + 1)))
    assert not found.has_value and "larger than" in found.error


def test_messagepack_is_decoded_when_the_content_type_says_so():
    value = {"id": 7, "blob": b"\x00\xff", 3: "three", "when": dt.datetime(2026, 1, 2, tzinfo=dt.UTC)}
    data = msgpack.packb(value, use_bin_type=True, datetime=True)
    found = decode(data, content_type="application/msgpack; charset=binary")
    assert found.chain == "MessagePack"
    assert found.value == {
        "id": 7,
        "blob": {"$bytes": "AP8="},
        "3": "three",
        "when": "2026-01-02T00:00:00+00:00",
    }
    # without a hint, binary is not guessed to be MessagePack
    assert not decode(data).has_value and not decode(data).error


def test_cbor_is_decoded_when_the_source_setting_says_so_even_inside_gzip():
    data = gzip.compress(cbor2.dumps({"order": 42, "raw": b"\x01"}))
    found = decode(data, payload_format="cbor")
    assert found.chain == "gzip → CBOR" and found.value == {"order": 42, "raw": {"$bytes": "AQ=="}}


def test_a_body_that_is_not_the_declared_format_says_why():
    found = decode(b"\x93\x01", payload_format="cbor")
    assert not found.has_value and "CBOR" in found.error and "payload format" in found.error
    found = decode(b"{not json", content_type="application/json")
    assert not found.has_value and "JSON" in found.error and "content type application/json" in found.error


def test_plain_json_and_text_decode_but_change_nothing_in_the_view():
    assert decode(BODY).value == ORDER and not decode(BODY).changes_the_view
    assert decode(b"hello").value == "hello" and not decode(b"hello").changes_the_view
    assert not decode(b"\x00\xff\xfe").has_value and not decode(b"\x00\xff\xfe").error


def test_a_gzip_of_binary_without_a_format_explains_what_to_set():
    found = decode(gzip.compress(b"\x00\xff\xfe"))
    assert found.chain == "gzip" and "payload format" in found.error and found.inner == b"\x00\xff\xfe"


def test_raw_turns_decoding_off():
    found = decode(gzip.compress(BODY), payload_format="raw")
    assert not found.has_value and not found.steps and not found.changes_the_view


@pytest.mark.parametrize("fmt", ["msgpack", "cbor", "json"])
def test_serialize_is_the_inverse_of_parse(fmt):
    value = {"id": 7, "blob": {"$bytes": "AP8="}, "items": [1, 2.5, None, True]}
    if fmt == "json":
        value.pop("blob")
    assert formats.parse(fmt, formats.serialize(fmt, value)) == value


@pytest.mark.parametrize("name", sorted(compression.MAGIC))
def test_compress_is_the_inverse_of_decompress(name):
    data = compression.compress(name, BODY)
    assert compression.detect(data) == name and compression.decompress(name, data) == BODY


def test_any_bytes_decode_without_raising():
    corpus = [
        b"",
        b"\x1f",
        b"\x1f\x8b",
        b"\x28\xb5\x2f\xfd" + b"\x00" * 10,
        b"\x04\x22\x4d\x18\xff",
        b"[" * 5000,
    ]
    for data in corpus:
        for fmt in ("auto", "msgpack", "cbor", "json", "text"):
            decode(data, payload_format=fmt)
