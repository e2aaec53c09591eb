"""Re-encoding an edited decoded value as the original was (dlqadmin.decoding.reencode)."""

import gzip
import json

import cbor2
import cramjam
import msgpack
import pytest

from dlqadmin.decoding.chain import decode
from dlqadmin.decoding.reencode import EncodeError, reencode

EDITED = {"order": 43, "raw": {"$bytes": "AP8="}}


def test_zstd_of_gzip_of_msgpack_comes_back_in_the_same_layers():
    original = bytes(cramjam.zstd.compress(gzip.compress(msgpack.packb({"order": 42, "raw": b"\x00\xff"}))))
    found = decode(original, payload_format="msgpack")
    data = reencode(found, EDITED)
    again = decode(data, payload_format="msgpack")
    assert again.compressions == ["zstd", "gzip"] and again.value == EDITED
    assert msgpack.unpackb(gzip.decompress(bytes(cramjam.zstd.decompress(data)))) == {
        "order": 43,
        "raw": b"\x00\xff",
    }


def test_cbor_and_json_keep_their_format():
    assert cbor2.loads(reencode(decode(cbor2.dumps({"a": 1}), payload_format="cbor"), {"a": 2})) == {"a": 2}
    assert json.loads(reencode(decode(b'{"a": 1}'), {"a": 2})) == {"a": 2}


def test_a_payload_that_did_not_decode_cannot_be_edited_as_json():
    with pytest.raises(EncodeError, match="did not decode"):
        reencode(decode(gzip.compress(b"{}")[:8]), {"a": 1})


def test_a_text_body_is_edited_as_one_string():
    assert reencode(decode(b"hello"), "bye") == b"bye"
    with pytest.raises(EncodeError):
        reencode(decode(b"hello"), {"not": "text"})
