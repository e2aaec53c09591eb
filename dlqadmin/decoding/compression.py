"""Compressed bodies recognised by their magic bytes: gzip, zstd, snappy (framed), lz4 (framed).

Each decompression stops at ``MAX_OUTPUT`` bytes, so a small body that expands to gigabytes
(a decompression bomb) is an error, not an outage. ``compress`` is the inverse, used when an
edited message is re-compressed as its original was.
"""

from __future__ import annotations

import zlib

import cramjam

#: largest decompressed body shown or re-encoded (bytes)
MAX_OUTPUT = 8 * 1024 * 1024

MAGIC = {
    "gzip": b"\x1f\x8b",
    "zstd": b"\x28\xb5\x2f\xfd",
    "snappy": b"\xff\x06\x00\x00sNaPpY",  # the framing format's stream identifier chunk
    "lz4": b"\x04\x22\x4d\x18",  # the frame format's magic number
}

LABELS = {"gzip": "gzip", "zstd": "zstd", "snappy": "snappy (framed)", "lz4": "lz4 (framed)"}


class DecompressError(ValueError):
    """The body starts like a compressed stream but cannot be decompressed."""


def detect(data: bytes) -> str | None:
    """The compression ``data`` starts with (a key of ``MAGIC``), or None."""
    for name, magic in MAGIC.items():
        if data.startswith(magic):
            return name
    return None


def decompress(name: str, data: bytes, *, limit: int = MAX_OUTPUT) -> bytes:
    """``data`` decompressed; raises DecompressError (truncated, corrupt, larger than ``limit``)."""
    if name == "gzip":
        return _gunzip(data, limit)
    codec = _codec(name)
    buffer = bytearray(limit + 1)
    try:
        size = codec.decompress_into(data, buffer)
    except cramjam.DecompressionError as exc:
        if "whole buffer" in str(exc):
            raise DecompressError(f"{LABELS[name]}: decompressed body is larger than {limit} bytes") from None
        raise DecompressError(f"{LABELS[name]}: {exc} (truncated or corrupt)") from None
    if size > limit:
        raise DecompressError(f"{LABELS[name]}: decompressed body is larger than {limit} bytes")
    return bytes(buffer[:size])


def compress(name: str, data: bytes) -> bytes:
    """``data`` compressed with ``name`` (a key of ``MAGIC``), in the framing ``detect`` reads."""
    if name == "gzip":
        return bytes(cramjam.gzip.compress(data))
    return bytes(_codec(name).compress(data))


def _codec(name: str):
    codecs = {"zstd": cramjam.zstd, "snappy": cramjam.snappy, "lz4": cramjam.lz4}
    if name not in codecs:
        raise ValueError(f"unknown compression {name!r}")
    return codecs[name]


def _gunzip(data: bytes, limit: int) -> bytes:
    stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = stream.decompress(data, limit + 1)
    except zlib.error as exc:
        raise DecompressError(f"gzip: {exc} (corrupt)") from None
    if len(out) > limit:
        raise DecompressError(f"gzip: decompressed body is larger than {limit} bytes")
    if not stream.eof:
        raise DecompressError("gzip: the stream ends early (truncated)")
    return out
