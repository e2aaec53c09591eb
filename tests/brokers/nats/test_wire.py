"""NATS wire helpers (pure functions): Direct Get header blocks and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

from brokers.nats import wire


def test_direct_get_block_is_split_back_into_the_stored_block():
    own = b"NATS/1.0\r\nNats-Subject: user-set\r\na: 1\r\n\r\n"
    appended = own[:-2] + (
        b"Nats-Stream: S\r\nNats-Subject: s.x\r\nNats-Sequence: 5\r\n"
        b"Nats-Time-Stamp: 2026-01-01T00:00:00.1Z\r\n\r\n"
    )
    assert wire.split_direct_get(appended) == (
        own,
        {
            "nats-stream": "S",
            "nats-subject": "s.x",
            "nats-sequence": "5",
            "nats-time-stamp": "2026-01-01T00:00:00.1Z",
        },
    )
    bare = b"NATS/1.0\r\nNats-Stream: S\r\nNats-Sequence: 1\r\n\r\n"
    assert wire.split_direct_get(bare)[0] is None
    assert wire.status_of(b"NATS/1.0 404 No Messages\r\n\r\n") == ("404", "No Messages")


def test_times_parse_from_nanosecond_rfc3339_and_epoch():
    assert wire.parse_time("2026-11-26T17:54:19.778117986Z") == datetime(
        2026, 11, 26, 17, 54, 19, 778117, UTC
    )
    assert wire.parse_time("1764179659000") == datetime.fromtimestamp(1764179659, UTC)
    assert wire.parse_time("not a time") is None
