"""NATS advisory capture (``prepare``): dlqadmin's own capture stream, or a stream of the user's
that already captures the advisories (JetStream refuses a second stream on the same subjects),
read instead; what the harvest then finds there."""

from __future__ import annotations

import pytest

from brokers import get_adapter
from brokers.base import BrokerError, SourceSpec
from brokers.nats.admin import CAPTURE_PREFIX, collide, covers
from tests.brokers.contract import ListSink, run
from tests.support.nats import (
    NATS_URL,
    advisory_subjects,
    config,
    connected,
    fail_both_ways,
    stream_exists,
    users_capture,
    wait_for_advisories,
    work_stream,
)


def advisory(stream: str, **options) -> SourceSpec:
    return SourceSpec(name=stream, mode="advisory", address=stream, options=options)


async def prepare_then_fail_and_harvest(url: str, streams: list, mine_subjects=None, term=b"+TERM"):
    """Work stream (+ a user's capture on ``mine_subjects``), prepare, fail two messages, harvest
    with the prepared options; returns (stream, mine, preparation, seqs, harvested)."""
    stream, subject = await work_stream(url, streams)
    mine = await users_capture(url, streams, mine_subjects(stream)) if mine_subjects else None
    source = advisory(stream)
    async with get_adapter(config(url)) as adapter:
        preparation = await adapter.prepare(source)
    streams.append((url, preparation.options["capture_stream"]))
    seqs = await fail_both_ways(url, stream, subject, term=term)
    kinds = ("MAX_DELIVERIES", "MSG_TERMINATED")
    if mine_subjects and len(mine_subjects(stream)) == 1 and "MAX_DELIVERIES" in mine_subjects(stream)[0]:
        kinds = kinds[:1]
    await wait_for_advisories(url, preparation.options["capture_stream"], stream, kinds)
    sink = ListSink()
    spec = advisory(stream, **preparation.options)
    async with get_adapter(config(url)) as adapter:
        await adapter.harvest(spec, sink)
    return stream, mine, preparation, seqs, sink.messages


def test_prepare_creates_dlqadmins_capture_and_says_so(streams):
    stream, _, preparation, seqs, got = run(prepare_then_fail_and_harvest(NATS_URL, streams))
    assert preparation.options == {"capture_stream": CAPTURE_PREFIX + stream}
    capture = CAPTURE_PREFIX + stream
    assert (
        preparation.note
        == f"stream {capture} (created by dlqadmin) captures the dead-letter advisories of {stream}"
    )
    by_consumer = {m.origin.extra["consumer"]: m for m in got}
    assert (
        by_consumer["retrier"].reason == "max_deliveries" and by_consumer["validator"].reason == "terminated"
    )
    assert {c: m.origin.seq for c, m in by_consumer.items()} == seqs


def test_prepare_reads_a_users_stream_that_already_captures_the_advisories(streams):
    stream, mine, preparation, seqs, got = run(
        prepare_then_fail_and_harvest(NATS_URL, streams, mine_subjects=advisory_subjects)
    )
    assert preparation.options == {"capture_stream": mine, "durable": f"dlqadmin-harvester-{stream}"}
    assert f"stream {mine} (not dlqadmin's) already captures" in preparation.note
    assert "keeps only some" not in preparation.note
    assert not run(stream_exists(NATS_URL, CAPTURE_PREFIX + stream))  # nothing second was created
    assert sorted((m.reason, m.origin.seq, m.payload) for m in got) == sorted(
        [
            ("max_deliveries", seqs["retrier"], b'{"order": 1}'),
            ("terminated", seqs["validator"], b'{"order": 2}'),
        ]
    )


def test_a_users_stream_keeping_only_some_advisories_is_read_and_the_gap_is_told(streams):
    def only_max_deliveries(stream):
        return advisory_subjects(stream)[:1]

    _, mine, preparation, seqs, got = run(
        prepare_then_fail_and_harvest(NATS_URL, streams, mine_subjects=only_max_deliveries)
    )
    assert preparation.options["capture_stream"] == mine
    assert preparation.note.endswith(
        "it keeps only some MSG_TERMINATED advisories, so other such failures are missed"
    )
    assert [(m.reason, m.origin.seq) for m in got] == [("max_deliveries", seqs["retrier"])]


def test_a_wildcard_capture_of_every_advisory_is_read(private_nats, streams):
    """On a private server: a stream on ``$JS.EVENT.ADVISORY.>`` would take every other test's
    advisories on the shared one."""
    url = private_nats.url
    _, mine, preparation, seqs, got = run(
        prepare_then_fail_and_harvest(
            url, streams, mine_subjects=lambda s: ["$JS.EVENT.ADVISORY.>"], term=b"+TERM bad payload"
        )
    )
    assert preparation.options["capture_stream"] == mine and "keeps only some" not in preparation.note
    # the wildcard also keeps other advisories (API audit, NAKs, ...): only dead letters are stored
    assert sorted((m.reason, m.origin.seq, m.error_message) for m in got) == [
        ("max_deliveries", seqs["retrier"], ""),
        ("terminated", seqs["validator"], "bad payload"),
    ]


def test_preparing_again_with_a_users_capture_is_idempotent(streams):
    async def go():
        stream, _ = await work_stream(NATS_URL, streams)
        mine = await users_capture(NATS_URL, streams, advisory_subjects(stream))
        async with get_adapter(config()) as adapter:
            first = await adapter.prepare(advisory(stream))
            second = await adapter.prepare(advisory(stream))
        async with connected(NATS_URL) as (_, js):
            info = await js.stream_info(mine)
        return mine, first, second, info

    mine, first, second, info = run(go())
    assert first == second and first.options["capture_stream"] == mine
    assert info.config.subjects == advisory_subjects(info.config.subjects[0].split(".")[-2])  # untouched


def test_a_named_capture_stream_that_collides_is_a_clear_error(streams):
    async def go():
        stream, _ = await work_stream(NATS_URL, streams)
        mine = await users_capture(NATS_URL, streams, advisory_subjects(stream))
        async with get_adapter(config()) as adapter:
            with pytest.raises(BrokerError) as err:
                await adapter.prepare(advisory(stream, capture_stream=f"T_OTHER_{stream}"))
        return mine, err.value

    mine, err = run(go())
    assert err.permanent and f"already captured by stream {mine}" in str(err)


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("$JS.EVENT.ADVISORY.>", "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.*", True),
        ("$JS.EVENT.ADVISORY.CONSUMER.*.S.*", "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.*", True),
        (
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.w",
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.*",
            False,
        ),
        ("a.*", "a.>", False),
        ("a.>", "a", False),
        ("a.b", "a.b.c", False),
    ],
)
def test_covers(pattern, subject, expected):
    assert covers(pattern, subject) is expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.w",
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.*",
            True,
        ),
        ("$JS.EVENT.ADVISORY.>", "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.S.*", True),
        ("$JS.EVENT.ADVISORY.CONSUMER.*.T.*", "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.S.*", False),
        ("a.>", "a", False),
        ("a.*", "a.b.c", False),
    ],
)
def test_collide(a, b, expected):
    assert collide(a, b) is expected
