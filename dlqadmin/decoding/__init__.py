"""Payload decoding: what a stored body says, for people (read path) and for edits (write path).

Pure: no database, no network, no Django models. The caller passes the bytes and what is known
about them (content type, the source's ``payload_format`` setting, a schema lookup) and gets a
:class:`~dlqadmin.decoding.chain.Decoded`: the decoded value as JSON-compatible data, the chain
of steps that produced it ("gzip → JSON") and, when a step failed, why. The stored bytes are never
changed: decoding works on a copy and the raw bytes stay what pages, downloads and redrives use.

- ``compression.py``: gzip, zstd, snappy (framed) and lz4 (framed), recognised by magic bytes,
  decompressed with a size limit.
- ``formats.py``: JSON, MessagePack, CBOR and text; ``jsonable`` / ``from_jsonable`` map the
  values these formats carry (bytes, datetimes, non-string keys) to JSON and back.
- ``avro.py``: Avro records read into their JSON form and written back from it (logical types,
  bytes), with field-by-field errors.
- ``confluent.py``: the Confluent wire format (magic byte 0, schema id): Avro, Protobuf and
  JSON Schema records read with a schema the caller looks up (``SchemaLookup``), and re-encoded.
- ``proto_source.py``: ``.proto`` source (a main file and its imports) compiled to a
  FileDescriptorSet with the protoc of ``grpcio-tools`` (a child process), for the schema store.
- ``chain.py``: ``decode(data, ...)``, the whole chain.
- ``reencode.py``: ``reencode(decoded, value)``, an edited value back to bytes encoded and
  compressed as the original was.
"""
