"""Redriving to JetStream: publish, wait for the PubAck, report one outcome per message.

Headers: the original ones minus broker-owned / diagnostic names (:func:`headers.filter_for_redrive`
drops every ``Nats-*``), then the retry headers as decimal / ISO strings, ``policy.extra``,
and ``Nats-Msg-Id: redrive:<redrive_id>``. Never the original ``Nats-Msg-Id``: inside the
stream's duplicate window the server would silently drop the copy as a duplicate. The
redrive-scoped id makes a retry of the same redrive idempotent instead: a duplicate PubAck
means an earlier attempt already stored it.

nats-py publishes headers from a ``dict``: a name that occurs several times (possible from Go
or other clients) goes out with its last value only, surrounding whitespace is trimmed and
line breaks become spaces. The outcome's ``error`` notes any such change on an ``ok`` outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
from collections.abc import Sequence

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from brokers import headers
from brokers.base import Destination, HeaderPolicy, RedriveMessage, RedriveOutcome

from .connection import TRANSIENT_API_CODES, describe

DEFAULT_WINDOW = 256
#: written by application-level DLQ publishers (nestjs-jetstream & co): diagnostics of the
#: failure, stale on a redriven copy; stripped unless ``keep_diagnostics``.
APP_DLQ_DIAGNOSTICS = ("x-dead-letter-reason", "x-failed-at", "x-dlq-reason", "x-dlq-failed-at")
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class _Refused(Exception):
    """The message cannot be published as is (permanent)."""


def _text(name: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(
                f"header {name!r} is not UTF-8 text, which NATS headers cannot carry through nats-py; "
                "strip it with the header policy"
            ) from None
    return str(value)


def build_headers(message: RedriveMessage, policy: HeaderPolicy | None) -> tuple[dict[str, str], list[str]]:
    """The header dict to publish and notes about anything nats-py will change."""
    policy = policy or HeaderPolicy()
    if not policy.keep_diagnostics:
        policy = dataclasses.replace(policy, strip=[*policy.strip, *APP_DLQ_DIAGNOSTICS])
    out: dict[str, str] = {}
    notes: list[str] = []
    for name, value in headers.decode_pairs(headers.filter_for_redrive(message.headers, policy)):
        text = _text(name, value)
        if name in out:
            notes.append(f"header {name!r} had several values; only the last was sent")
        if "\r" in text or "\n" in text:
            notes.append(f"line breaks in header {name!r} were sent as spaces")
        elif text != text.strip():
            notes.append(f"surrounding whitespace of header {name!r} was trimmed")
        out[name] = text
    origin = message.origin
    for name, value in headers.retry_headers(
        retry_count=message.retry_count,
        redrive_id=message.redrive_id,
        origin_headers={
            "x-original-subject": origin.subject or None,
            "x-original-stream": origin.stream or None,
            "x-original-seq": None if origin.seq is None else str(origin.seq),
        },
    ):
        out[name] = _text(name, value)
    for name, value in policy.extra.items():
        out[name] = _text(name, value)
    out["Nats-Msg-Id"] = f"redrive:{message.redrive_id}"
    for name in out:
        if not HEADER_NAME.fullmatch(name):
            raise _Refused(f"header name {name!r} is not a valid NATS header name")
    return out, list(dict.fromkeys(notes))


def _wire_size(payload: bytes, hdr: dict[str, str]) -> int:
    return len(payload) + 12 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in hdr.items())


class _PubAcks:
    """Pipelined JetStream publishing: one wildcard reply inbox per redrive call, PubAcks matched
    to futures by token, no task per message.

    Not ``js.publish`` (one request and one ``wait_for`` task per message: about a third of the
    throughput) and not ``js.publish_async``: in nats-py 2.16.0 an error answer (e.g. "message
    size exceeds maximum allowed") raises inside its reply callback and the future never
    completes.
    """

    def __init__(self, nc: Client):
        self.nc = nc
        self.prefix = nc.new_inbox()
        self.futures: dict[str, asyncio.Future[Msg]] = {}
        self.count = 0

    async def __aenter__(self) -> _PubAcks:
        self.sub = await self.nc.subscribe(f"{self.prefix}.*", cb=self._on_reply)
        return self

    async def __aexit__(self, *exc) -> None:
        for future in self.futures.values():
            future.cancel()
        with contextlib.suppress(Exception):
            await self.sub.unsubscribe()

    async def _on_reply(self, msg: Msg) -> None:
        future = self.futures.pop(msg.subject.rpartition(".")[2], None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def publish(self, subject: str, payload: bytes, hdr: dict[str, str]) -> asyncio.Future[Msg]:
        self.count += 1
        token = str(self.count)
        future = asyncio.get_running_loop().create_future()
        self.futures[token] = future
        try:
            await self.nc.publish(subject, payload, reply=f"{self.prefix}.{token}", headers=hdr)
        except BaseException:
            self.futures.pop(token, None)
            raise
        return future

    def forget(self, future: asyncio.Future) -> None:
        for token, pending in list(self.futures.items()):
            if pending is future:
                del self.futures[token]
        future.cancel()


async def redrive(
    nc: Client,
    messages: Sequence[RedriveMessage],
    *,
    destination: Destination | None,
    header_policy: HeaderPolicy | None,
    timeout: float,
    window: int = DEFAULT_WINDOW,
) -> list[RedriveOutcome]:
    """Publish with up to ``window`` PubAcks outstanding; outcomes come back in input order."""
    prepared = [_prepare(m, destination, header_policy, nc.max_payload) for m in messages]
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(max(1, window))
    sent: list[tuple[asyncio.Future, RedriveOutcome, list[str], float]] = []
    no_ack = (
        f"no PubAck within {timeout:g}s (the copy may still have been stored; redriving again with the "
        "same redrive_id is deduplicated inside the stream's duplicate window)"
    )

    async with _PubAcks(nc) as acks:
        for outcome, message, hdr, notes in prepared:
            if hdr is None:
                continue
            while slots.locked():  # the window is full: wait for a PubAck, expire lost ones
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(slots.acquire(), timeout)
                    slots.release()
                    break
                for future, *_, at in sent:
                    if not future.done() and loop.time() - at >= timeout:
                        acks.forget(future)
            await slots.acquire()
            try:
                future = await acks.publish(outcome.destination, message.payload, hdr)
            except (
                nats.errors.MaxPayloadError,
                nats.errors.BadHeaderError,
                nats.errors.BadSubjectError,
            ) as exc:
                slots.release()
                outcome.error, outcome.permanent = f"{type(exc).__name__}: {describe(exc)}", True
                continue
            except (nats.errors.Error, OSError) as exc:  # connection lost: worth retrying later
                slots.release()
                outcome.error = describe(exc)
                continue
            future.add_done_callback(lambda _: slots.release())
            sent.append((future, outcome, notes, loop.time()))
        pending = [future for future, *_ in sent if not future.done()]
        if pending:
            last = max(at for *_, at in sent)
            await asyncio.wait(pending, timeout=max(0.0, last + timeout - loop.time()))
        for future, outcome, notes, _ in sent:
            if future.done() and not future.cancelled():
                _interpret(outcome, future.result(), notes)
            else:
                outcome.error = no_ack
    return [outcome for outcome, *_ in prepared]


def _prepare(
    message: RedriveMessage, destination: Destination | None, policy: HeaderPolicy | None, max_payload: int
) -> tuple[RedriveOutcome, RedriveMessage, dict[str, str] | None, list[str]]:
    """The outcome to fill in and the headers to send (None: refused, outcome says why)."""
    subject = (destination.subject if destination else None) or message.origin.subject
    outcome = RedriveOutcome(ref=message.ref, ok=False, destination=subject or "", permanent=True)
    if message.properties.get("payload_unavailable") and not message.payload:
        outcome.error = f"nothing to redrive: {message.properties['payload_unavailable']}"
        return outcome, message, None, []
    if not subject:
        outcome.error = "needs a destination: no original subject is recorded; give a destination subject"
        return outcome, message, None, []
    try:
        hdr, notes = build_headers(message, policy)
    except _Refused as exc:
        outcome.error = str(exc)
        return outcome, message, None, []
    size = _wire_size(message.payload, hdr)
    if max_payload and size > max_payload:
        # the server would close the whole connection on a Maximum Payload Violation
        outcome.error = f"message of {size} bytes with headers exceeds the server's max_payload {max_payload}"
        return outcome, message, None, []
    outcome.permanent = False
    return outcome, message, hdr, notes


def _interpret(outcome: RedriveOutcome, reply: Msg, notes: list[str]) -> None:
    status = str((reply.headers or {}).get("Status", "")) if not reply.data else ""
    if status == "503":  # no responders: nothing listens on the subject
        outcome.error, outcome.permanent = f"no stream captures subject {outcome.destination}", True
        return
    if status:
        outcome.error = f"{status} {(reply.headers or {}).get('Description', '')}".strip()
        return
    try:
        answer = json.loads(reply.data)
    except ValueError:
        outcome.error, outcome.permanent = "not a JetStream PubAck (a core NATS subscriber answered?)", True
        return
    if "error" in answer:
        err = answer["error"]
        outcome.error = f"{err.get('description')} (code {err.get('code')}, err_code {err.get('err_code')})"
        outcome.permanent = err.get("code") not in TRANSIENT_API_CODES
        return
    outcome.ok = True
    outcome.position = f"{answer.get('stream')}:{answer.get('seq')}"
    outcome.error = "duplicate (already redriven)" if answer.get("duplicate") else "; ".join(notes)
