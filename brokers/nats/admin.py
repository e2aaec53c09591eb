"""Streams and consumers the adapter manages or inspects: the advisory capture stream
(``prepare``), the harvester's durable consumers, backlog (discovery: ``discovery.py``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)

from brokers.base import BrokerError, Preparation, SourceSpec

from .connection import translate

ADVISORY_PREFIX = "$JS.EVENT.ADVISORY.CONSUMER."
#: the advisories that mean "this message is dead" (MSG_NAKED is noise and not captured).
CAPTURED_KINDS = ("MAX_DELIVERIES", "MSG_TERMINATED")
CAPTURE_PREFIX = "DLQADMIN_ADV_"
#: how the description of a capture stream dlqadmin created starts
OURS = "dlqadmin:"
DEFAULT_DURABLE = "dlqadmin-harvester"
DEFAULT_CAPTURE_MAX_AGE = 30 * 86400.0
DEFAULT_ACK_WAIT = 30.0
DLQ_NAME = re.compile(r"dlq|dead", re.IGNORECASE)

ERR_CONSUMER_NOT_FOUND = 10014
ERR_STREAM_NAME_IN_USE = 10058
ERR_STREAM_NOT_FOUND = 10059
ERR_SUBJECTS_OVERLAP = 10065


def sanitize(name: str) -> str:
    """A stream / consumer name token made of the characters every server version accepts."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def validate_stream_name(name: str) -> None:
    if not name or any(c in name for c in " \t\r\n.*>/\\"):
        raise BrokerError(f"{name!r} is not a JetStream stream name", permanent=True)


def capture_stream_name(source: SourceSpec) -> str:
    return str(source.options.get("capture_stream") or CAPTURE_PREFIX + sanitize(source.address))


def capture_subjects(address: str) -> list[str]:
    return [f"{ADVISORY_PREFIX}{kind}.{address}.*" for kind in CAPTURED_KINDS]


def advisory_filter(address: str) -> str:
    """What the harvester's durable reads from a (possibly shared) capture stream."""
    return f"{ADVISORY_PREFIX}*.{address}.*"


def durable_name(source: SourceSpec) -> str:
    return str(source.options.get("durable") or DEFAULT_DURABLE)


def is_not_found(exc: BaseException, *codes: int) -> bool:
    return isinstance(exc, nats.js.errors.NotFoundError) and (not codes or exc.err_code in codes)


@dataclass
class StreamFacts:
    exists: bool
    allow_direct: bool = False
    created: datetime | None = None
    retention: str = "limits"
    first_seq: int = 0
    last_seq: int = 0
    messages: int = 0


async def stream_facts(js: JetStreamContext, stream: str) -> StreamFacts:
    with translate(f"stream info {stream}"):
        try:
            info = await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            return StreamFacts(exists=False)
    return StreamFacts(
        exists=True,
        allow_direct=bool(getattr(info.config, "allow_direct", False)),
        created=info.created,
        retention=str(getattr(info.config.retention, "value", info.config.retention) or "limits"),
        first_seq=info.state.first_seq,
        last_seq=info.state.last_seq,
        messages=info.state.messages,
    )


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    *,
    filter_subject: str = "",
    ack_wait: float,
    missing: BrokerError,
) -> int:
    """Create the harvester's durable pull consumer unless it exists (idempotent).

    Explicit acks, ``max_deliver`` unlimited (the harvester itself must never dead-letter),
    deliver everything from the start of the stream. ``missing`` is raised when the stream does
    not exist. Returns the consumer's ``max_ack_pending`` (0 = unlimited): the harvest never holds
    more unacknowledged messages than that.
    """
    action = f"consumer {durable} on {stream}"
    with translate(action):
        try:
            info = await js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError as exc:
            if exc.err_code == ERR_STREAM_NOT_FOUND:
                raise missing from exc
            info = None
        if info is not None:
            if info.config.deliver_subject:
                raise BrokerError(
                    f"{action} is a push consumer; choose another options.durable", permanent=True
                )
            if (info.config.filter_subject or "") != filter_subject:
                raise BrokerError(
                    f"{action} exists with filter {info.config.filter_subject!r}, not {filter_subject!r}; "
                    "choose another options.durable",
                    permanent=True,
                )
            return max(0, info.config.max_ack_pending or 0)
        try:
            info = await js.add_consumer(
                stream,
                ConsumerConfig(
                    durable_name=durable,
                    description="dlqadmin harvester; delete it when the dead-letter source is removed",
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=ack_wait,
                    max_deliver=-1,
                    filter_subject=filter_subject or None,
                ),
            )
        except nats.js.errors.NotFoundError as exc:
            raise missing from exc
    return max(0, info.config.max_ack_pending or 0)


async def pending(js: JetStreamContext, stream: str, durable: str) -> int | None:
    """``num_pending + num_ack_pending`` of the durable, None when it does not exist."""
    with translate(f"consumer info {stream}/{durable}"):
        try:
            info = await js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            return None
    return (info.num_pending or 0) + (info.num_ack_pending or 0)


async def count_subjects(js: JetStreamContext, stream: str, subject_filter: str) -> int | None:
    with translate(f"stream info {stream}"):
        try:
            info = await js.stream_info(stream, subjects_filter=subject_filter)
        except nats.js.errors.NotFoundError:
            return None
    return sum((info.state.subjects or {}).values())


# --------------------------------------------------------------------------------------------
# prepare


def covers(pattern: str, subject: str) -> bool:
    """Every subject ``subject`` (wildcards allowed) matches also matches ``pattern``."""
    p, s = pattern.split("."), subject.split(".")
    for i, word in enumerate(p):
        if word == ">":
            return len(s) > i
        if i >= len(s) or s[i] == ">" or word not in ("*", s[i]):
            return False
    return len(p) == len(s)


def collide(a: str, b: str) -> bool:
    """Some subject matches both ``a`` and ``b`` (JetStream's "subjects overlap")."""
    ta, tb = a.split("."), b.split(".")
    for i in range(max(len(ta), len(tb))):
        x, y = (ta[i] if i < len(ta) else None), (tb[i] if i < len(tb) else None)
        if x == ">" or y == ">":
            return x is not None and y is not None
        if x is None or y is None or (x != y and "*" not in (x, y)):
            return False
    return True


async def prepare_capture(js: JetStreamContext, source: SourceSpec) -> Preparation:
    """Create (or extend) the stream that keeps ``source.address``'s dead-letter advisories, or
    find the stream of the user's that already keeps them (JetStream refuses a second stream
    on the same subjects) and read from that one.

    Advisories are core-NATS events, sent only when someone listens: failures that happen
    before a capture exists are lost for good. A stream dlqadmin creates has Limits retention
    and ``max_age`` from ``source.options["max_age"]`` (seconds, default 30 days). Idempotent.
    Raises BrokerError (permanent: the watched stream does not exist, a named capture stream
    cannot be used).
    """
    address = source.address
    validate_stream_name(address)
    name = capture_stream_name(source)
    validate_stream_name(name)
    subjects = capture_subjects(address)
    if not (await stream_facts(js, address)).exists:
        raise BrokerError(f"stream {address} does not exist on this server", permanent=True)
    with translate(f"create capture stream {name}"):
        try:
            info: StreamInfo | None = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            info = None
        if info is None:
            try:
                await js.add_stream(
                    StreamConfig(
                        name=name,
                        description=f"{OURS} dead-letter advisories of stream {address}",
                        subjects=subjects,
                        retention=RetentionPolicy.LIMITS,
                        storage=StorageType.FILE,
                        discard=DiscardPolicy.OLD,
                        max_age=float(source.options.get("max_age", DEFAULT_CAPTURE_MAX_AGE)),
                        num_replicas=int(source.options.get("replicas", 1)),
                    )
                )
                return _prepared(name, address, ours=True)
            except nats.js.errors.APIError as exc:
                if exc.err_code == ERR_SUBJECTS_OVERLAP:
                    if source.options.get("capture_stream"):
                        owner = await _owner_of(js, subjects[0])
                        raise BrokerError(
                            f"the advisories of {address} are already captured by stream {owner}; "
                            f"set options.capture_stream to {owner!r} or remove it",
                            permanent=True,
                        ) from exc
                    return await _captured_elsewhere(js, source, subjects)
                if exc.err_code != ERR_STREAM_NAME_IN_USE:  # else: a concurrent prepare won
                    raise
                info = await js.stream_info(name)
        current = list(info.config.subjects or [])
        if not any(watched_stream(s) for s in current):
            raise BrokerError(f"stream {name} exists and does not capture advisories", permanent=True)
        missing = [s for s in subjects if not any(covers(c, s) for c in current)]
        if missing:
            info.config.subjects = current + missing
            await js.update_stream(info.config)
    return _prepared(name, address, ours=(info.config.description or "").startswith(OURS))


def _prepared(name: str, address: str, *, ours: bool) -> Preparation:
    whose = "created by dlqadmin" if ours else "named in options.capture_stream"
    return Preparation(
        options={"capture_stream": name},
        note=f"stream {name} ({whose}) captures the dead-letter advisories of {address}",
    )


async def _captured_elsewhere(js: JetStreamContext, source: SourceSpec, subjects: list[str]) -> Preparation:
    """The stream whose subjects keep most of ``subjects`` (a user's capture, possibly shared by
    several watched streams: one durable per watched stream)."""
    address = source.address
    best, best_rank = None, (0, 0)
    for info in await list_streams(js):
        own = list(info.config.subjects or [])
        rank = (
            sum(any(covers(p, s) for p in own) for s in subjects),
            sum(any(collide(p, s) for p in own) for s in subjects),
        )
        if rank > best_rank:
            best, best_rank = info, rank
    if best is None:  # the overlapping stream was deleted meanwhile: the next prepare creates ours
        raise BrokerError(f"the advisories of {address} overlap another stream's subjects", permanent=False)
    owner = best.config.name
    durable = str(source.options.get("durable") or f"{DEFAULT_DURABLE}-{sanitize(address)}")
    note = (
        f"stream {owner} (not dlqadmin's) already captures the dead-letter advisories of {address} "
        f"and JetStream refuses a second stream on them: dlqadmin reads them from {owner} "
        f"(durable consumer {durable})"
    )
    own = list(best.config.subjects or [])
    partly = [k for k, s in zip(CAPTURED_KINDS, subjects, strict=True) if not any(covers(p, s) for p in own)]
    if partly:
        note += f"; it keeps only some {' / '.join(partly)} advisories, so other such failures are missed"
    return Preparation(options={"capture_stream": owner, "durable": durable}, note=note)


async def _owner_of(js: JetStreamContext, subject: str) -> str:
    try:
        return await js.find_stream_name_by_subject(subject)
    except Exception:  # only used to word an error message
        return "another stream"


def watched_stream(subject: str) -> str | None:
    """The watched stream of an advisory capture subject ("*" for any), None if not a capture."""
    if subject in ("$JS.>", "$JS.EVENT.>", "$JS.EVENT.ADVISORY.>", ADVISORY_PREFIX + ">"):
        return "*"
    if not subject.startswith(ADVISORY_PREFIX):
        return None
    tokens = subject[len(ADVISORY_PREFIX) :].split(".")
    if tokens[0] not in (*CAPTURED_KINDS, "*"):
        return None
    if len(tokens) < 2 or tokens[1] in ("*", ">"):
        return "*"
    return tokens[1]


async def list_streams(js: JetStreamContext) -> list[StreamInfo]:
    streams: list[StreamInfo] = []
    with translate("list streams"):
        while True:
            page = await js.streams_info(offset=len(streams))
            if not page:
                return streams
            streams += page
