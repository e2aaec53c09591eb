"""Connecting to NATS, error translation, and the JetStream calls made below nats-py's helpers.

The adapter reads with its own small pieces of the JetStream wire API (pull requests with
``no_wait``, message gets, double acks) instead of nats-py's ``fetch``/``get_msg`` because:

* an empty ``fetch`` always waits its whole timeout, and a harvest must end as soon as the
  source is drained;
* ``get_msg`` without ``direct`` parses headers with ``email.parser`` (non-ASCII values come
  back as ``email.header.Header``), and every path collapses repeated header names.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import inspect
import json
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from brokers.base import BrokerError, ConnectionConfig
from brokers.tls import tls_context

from . import wire

log = logging.getLogger("brokers.nats")


# --------------------------------------------------------------------------------------------
# Keeping raw header blocks


class RawHeaders(dict):
    """nats-py's parsed header dict plus ``raw``, the exact block it was parsed from."""

    raw: bytes = b""


class RawHeaderClient(Client):
    """A nats-py client that keeps each received message's raw header block.

    nats-py parses the block in ``Client._process_headers`` and drops the bytes. This override
    is the adapter's only reliance on nats-py internals; when a nats-py upgrade renames the hook
    :data:`RAW_HEADERS_SUPPORTED` turns False and the adapter falls back to STREAM.MSG.GET (its
    JSON answer carries the stored block, base64) and to the parsed dict for live deliveries.
    ``tests/brokers/nats/test_advisory.py`` asserts the hook is in effect.
    """

    async def _process_headers(self, headers):  # type: ignore[override]
        parsed = await super()._process_headers(headers)
        if parsed is not None and headers:
            parsed = RawHeaders(parsed)
            parsed.raw = bytes(headers)
        return parsed

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        """nats-py 2.16's own parser, line for line, but for its whitespace test: it ran
        ``str.isspace`` over every character of every header name in a generator, a tenth of a
        NATS harvest's CPU (issue 15). ``str.split()`` splits on exactly the characters
        ``isspace`` accepts, so a name holds one iff it does not split into itself. Should a
        nats-py upgrade stop calling this hook, its own parser runs and nothing else changes."""
        out: dict[str, str] = {}
        for line in raw.split(b"\r\n"):
            if not line:
                continue
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            try:
                key = name.strip().decode("ascii")
            except UnicodeDecodeError:
                continue
            if key and key.split() != [key]:  # whitespace inside the name: not a header
                continue
            out[key] = value.strip().decode("utf-8", "replace")
        return out


RAW_HEADERS_SUPPORTED = inspect.iscoroutinefunction(getattr(Client, "_process_headers", None))


def raw_headers(msg: Msg) -> bytes | None:
    """The exact header block of a received message (None when it had none or when unknown)."""
    return getattr(msg.headers, "raw", None) if msg.headers else None


def header_pairs(msg: Msg) -> tuple[list[tuple[str, Any]], bytes | None]:
    """``(pairs, raw block)`` of a received message, lossless when the hook is in effect."""
    raw = raw_headers(msg)
    if raw is not None:
        return wire.parse_header_block(raw), raw
    return list((msg.headers or {}).items()), None


# --------------------------------------------------------------------------------------------
# Errors

#: JetStream API answers worth retrying: timeouts, server errors, "JetStream unavailable".
TRANSIENT_API_CODES = {408, 500, 503, 504}


def describe(exc: BaseException) -> str:
    if isinstance(exc, nats.js.errors.APIError):
        return f"{exc.description or 'JetStream API error'} (code {exc.code}, err_code {exc.err_code})"
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def translate(action: str) -> Iterator[None]:
    """Turn nats-py / socket errors raised inside the block into :class:`BrokerError`."""
    try:
        yield
    except BrokerError:
        raise
    except nats.js.errors.APIError as exc:
        permanent = exc.code not in TRANSIENT_API_CODES
        raise BrokerError(f"{action}: {describe(exc)}", permanent=permanent) from exc
    except (TimeoutError, nats.errors.TimeoutError) as exc:
        raise BrokerError(f"{action}: no answer from NATS in time", permanent=False) from exc
    except nats.errors.NoRespondersError as exc:
        raise BrokerError(f"{action}: no responders (is JetStream enabled here?)", permanent=False) from exc
    except (nats.errors.AuthorizationError, nats.errors.BadSubjectError) as exc:
        raise BrokerError(f"{action}: {describe(exc)}", permanent=True) from exc
    except (nats.errors.Error, OSError) as exc:
        raise BrokerError(f"{action}: {describe(exc)}", permanent=False) from exc


# --------------------------------------------------------------------------------------------
# Connecting


def server_urls(url: str) -> list[str]:
    """The comma-separated server URLs; BrokerError(permanent) for one that cannot be parsed."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    for part in urls:
        try:
            parts = urlsplit(part)
            parts.port  # noqa: B018 - an out-of-range port raises here
        except ValueError as exc:
            raise BrokerError(f"not a valid NATS URL: {part!r} ({exc})", permanent=True) from None
        if parts.scheme not in ("nats", "tls", "ws", "wss") or not parts.hostname:
            raise BrokerError(f"not a NATS URL: {part!r} (expected nats://host:4222)", permanent=True)
    return urls


def redact(url: str) -> str:
    """A URL without user info, for messages and logs."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018
    except ValueError:
        return "<invalid URL>"
    if not parts.username and not parts.password:
        return url
    host = parts.hostname or ""
    return parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host).geturl()


#: server -ERR texts that retrying cannot fix
REFUSED = ("authorization violation", "authentication expired", "authentication revoked")


def _refused(exc: BaseException) -> bool:
    return isinstance(exc, nats.errors.AuthorizationError | ssl.SSLCertVerificationError) or any(
        text in str(exc).lower() for text in REFUSED
    )


async def connect(config: ConnectionConfig) -> RawHeaderClient:
    """Connect once, trying each URL; raises BrokerError (transient unless refused access).

    Reconnection is bounded (``options["max_reconnect_attempts"]``, default 1 per server) so a
    one-shot call against an unreachable server fails within a second or two instead of
    retrying forever.
    """
    urls = server_urls(config.url)
    if not urls:
        raise BrokerError("no NATS server URL configured", permanent=True)
    options = config.options
    attempts = max(1, int(options.get("max_reconnect_attempts", 1)))
    seen: collections.deque[Exception] = collections.deque(maxlen=8)
    refused = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        # nats-py's default logs a traceback at ERROR for every failed attempt, and its final
        # NoServersError hides the cause (auth, certificate): keep the recent ones.
        seen.append(exc)
        if _refused(exc):
            refused.set()
        log.warning("nats: %s", describe(exc))

    kwargs: dict[str, Any] = {
        "servers": urls,
        "name": options.get("client_name", "dlqadmin"),
        "connect_timeout": config.timeout,
        "allow_reconnect": True,
        "max_reconnect_attempts": attempts,
        "reconnect_time_wait": float(options.get("reconnect_time_wait", 0.25)),
        "error_cb": on_error,
    }
    if config.username:
        kwargs["user"] = config.username
        kwargs["password"] = config.password
    # token auth: the connection's password with no username (or the legacy "token" option)
    token = options.get("token") or (config.password if not config.username else "")
    if token:
        kwargs["token"] = token
    if config.tls.enabled or any(u.startswith("tls://") for u in urls):
        kwargs["tls"] = tls_context(config.tls)
    where = ", ".join(redact(u) for u in urls)
    budget = (config.timeout + kwargs["reconnect_time_wait"]) * len(urls) * (attempts + 1) + 1
    nc = RawHeaderClient()
    try:
        await _connect_unless_refused(nc.connect(**kwargs), refused, budget)
    except Exception as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        causes = [exc, *seen]
        cause = next((c for c in causes if _refused(c)), None) or next(
            (c for c in reversed(seen) if not isinstance(c, nats.errors.NoServersError)), exc
        )
        message = f"cannot connect to NATS at {where}: {describe(cause)}"
        raise BrokerError(message, permanent=_refused(cause)) from exc
    return nc


async def _connect_unless_refused(connecting, refused: asyncio.Event, budget: float) -> None:
    """Await ``connecting`` for at most ``budget`` seconds, giving up as soon as the server
    refused us (after a failed TLS handshake nats-py would otherwise sit out the budget)."""
    task = asyncio.ensure_future(connecting)
    watcher = asyncio.ensure_future(refused.wait())
    try:
        done, _ = await asyncio.wait({task, watcher}, timeout=budget, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        task.result()
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if refused.is_set():
        raise BrokerError("refused by the server", permanent=True)
    raise TimeoutError(f"no connection within {budget:g}s")


def api_prefix(config: ConnectionConfig) -> str:
    domain = config.options.get("domain")
    return f"$JS.{domain}.API" if domain else str(config.options.get("api_prefix", "$JS.API"))


# --------------------------------------------------------------------------------------------
# JetStream wire calls


@dataclass
class StoredMessage:
    """A message as the stream holds it."""

    subject: str
    seq: int
    data: bytes
    raw_headers: bytes | None
    time: str
    via: str  # "direct" or "msg_get"


class MessageGone(Exception):
    """The stream no longer holds the message (or the stream itself is gone)."""


@dataclass
class JetStream:
    """The JetStream calls the adapter sends itself (see the module docstring for why)."""

    nc: Client
    prefix: str
    timeout: float

    async def request(self, subject: str, body: dict | None, action: str) -> dict:
        """A JetStream API call; an ``error`` answer raises nats-py's APIError (translated)."""
        payload = json.dumps(body).encode() if body is not None else b""
        with translate(action):
            reply = await self.nc.request(f"{self.prefix}.{subject}", payload, timeout=self.timeout)
            answer = json.loads(reply.data)
            if "error" in answer:
                err = answer["error"]
                raise nats.js.errors.APIError(
                    code=err.get("code"), err_code=err.get("err_code"), description=err.get("description")
                )
        return answer

    async def get_message(self, stream: str, seq: int, *, direct: bool, next_by: str = "") -> StoredMessage:
        """The message at ``seq`` (or the first at/after it matching ``next_by``), exactly.

        ``direct`` uses ``$JS.API.DIRECT.GET`` (needs ``allow_direct``; served by any replica,
        no base64). Raises :class:`MessageGone` when it is not there.
        """
        body: dict[str, Any] = {"seq": seq}
        if next_by:
            body["next_by_subj"] = next_by
        if direct and RAW_HEADERS_SUPPORTED:
            with translate(f"direct get {stream}#{seq}"):
                reply = await self.nc.request(
                    f"{self.prefix}.DIRECT.GET.{stream}", json.dumps(body).encode(), timeout=self.timeout
                )
            block = raw_headers(reply) or b""
            if not reply.data:
                code, text = wire.status_of(block)
                if code == "404":
                    raise MessageGone(f"no message {seq} in {stream}")
                if code:
                    raise BrokerError(f"direct get {stream}#{seq}: {code} {text}", permanent=code != "408")
            own, meta = wire.split_direct_get(block)
            return StoredMessage(
                subject=meta.get("nats-subject", ""),
                seq=int(meta.get("nats-sequence") or seq),
                data=reply.data,
                raw_headers=own,
                time=meta.get("nats-time-stamp", ""),
                via="direct",
            )
        try:
            answer = await self.request(f"STREAM.MSG.GET.{stream}", body, f"get {stream}#{seq}")
        except BrokerError as exc:
            cause = exc.__cause__
            if isinstance(cause, nats.js.errors.APIError) and cause.err_code in (10037, 10059):
                raise MessageGone(cause.description or "not found") from exc
            raise
        msg = answer["message"]
        return StoredMessage(
            subject=msg.get("subject", ""),
            seq=int(msg.get("seq", seq)),
            data=base64.b64decode(msg["data"]) if msg.get("data") else b"",
            raw_headers=base64.b64decode(msg["hdrs"]) if msg.get("hdrs") else None,
            time=msg.get("time", ""),
            via="msg_get",
        )

    async def pull(self, stream: str, consumer: str, batch: int, max_bytes: int) -> tuple[list[Msg], bool]:
        """One ``no_wait`` pull: whatever is available now, up to ``batch`` messages and
        ``max_bytes``. Returns ``(messages, drained)``; ``drained`` means the server said there
        is nothing more right now (404 No Messages, or 408 on 2.9.x)."""
        action = f"pull from {stream}/{consumer}"
        request = {"batch": batch, "no_wait": True, "max_bytes": max_bytes}
        msgs: list[Msg] = []
        with translate(action):
            inbox = self.nc.new_inbox()
            sub = await self.nc.subscribe(inbox, pending_bytes_limit=max(2 * max_bytes, 64 << 20))
            try:
                await self.nc.publish(
                    f"{self.prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                    json.dumps(request).encode(),
                    reply=inbox,
                )
                deadline = asyncio.get_running_loop().time() + self.timeout
                while len(msgs) < batch:
                    remaining = deadline - asyncio.get_running_loop().time()
                    try:
                        msg = await sub.next_msg(timeout=max(remaining, 0.001))
                    except nats.errors.TimeoutError:
                        if msgs:  # the rest will be redelivered after ack_wait
                            return msgs, False
                        raise
                    if msg.reply or msg.data:
                        msgs.append(msg)
                        continue
                    code, text = wire.status_of(raw_headers(msg))
                    if not code and msg.headers:  # raw hook unavailable
                        code = str(msg.headers.get("Status", ""))
                        text = str(msg.headers.get("Description", ""))
                    if code in ("404", "408"):
                        return msgs, True
                    if code == "100":  # idle heartbeat
                        continue
                    if code == "409" and "MaxBytes" in text:
                        if msgs:  # the batch is full by size; the rest comes next pull
                            return msgs, False
                        raise BrokerError(
                            f"{action}: a message is larger than options.batch_max_bytes ({max_bytes})",
                            permanent=True,
                        )
                    if code == "503":
                        raise BrokerError(f"{action}: consumer not found (503)", permanent=False)
                    raise BrokerError(f"{action}: {code} {text}".strip(), permanent=False)
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        return msgs, False

    async def settle(self, msgs: list[Msg], verb: bytes) -> None:
        """Ack (``+ACK``) or nak (``-NAK``) and wait for the server to confirm each one, so the
        next pull, even from another process, sees the new state."""
        if not msgs:
            return
        with translate("acknowledge" if verb == b"+ACK" else "negative-acknowledge"):
            await asyncio.gather(*(self.nc.request(m.reply, verb, timeout=self.timeout) for m in msgs))
