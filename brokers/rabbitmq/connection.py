"""Reaching RabbitMQ: URL and credentials, TLS, and mapping client errors to BrokerError."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import aio_pika
import aiormq.exceptions as amqp_exc
from yarl import URL

from brokers.base import BrokerError, ConnectionConfig
from brokers.tls import tls_context as ssl_context

DEFAULT_USERNAME = "guest"
DEFAULT_PASSWORD = "guest"  # noqa: S105 - RabbitMQ's built-in account, used when none is configured


def amqp_url(config: ConnectionConfig) -> URL:
    """The URL to connect with: ``config.url`` plus the separate credentials, ``amqps`` under TLS.

    An empty ``username`` means guest/guest (aio-pika always sends PLAIN credentials), unless the
    URL itself carries credentials.
    """
    url = _parse(config.url)
    if url.scheme not in ("amqp", "amqps") or not url.host:
        raise BrokerError(
            f"not an AMQP URL: {config.url!r} (expected amqp://host:5672/vhost)", permanent=True
        )
    if config.tls.enabled and url.scheme == "amqp":
        url = url.with_scheme("amqps")
        if url.explicit_port is None or url.explicit_port == 5672:
            url = url.with_port(5671)
    if config.username:
        url = url.with_user(config.username).with_password(config.password or None)
    elif not url.user:
        url = url.with_user(DEFAULT_USERNAME).with_password(DEFAULT_PASSWORD)
    return url


def vhost_of(config: ConnectionConfig) -> str:
    """The virtual host named by the URL path (``/`` when the path is empty or the URL is
    malformed: that error is reported by the first operation, not by the constructor)."""
    try:
        return unquote(_parse(config.url).raw_path[1:]) or "/"
    except BrokerError:
        return "/"


def _parse(raw: str) -> URL:
    try:
        url = URL(raw)
        url.port  # noqa: B018 - an out-of-range port raises here
    except (ValueError, TypeError) as exc:
        raise BrokerError(f"not a valid AMQP URL: {raw!r} ({exc})", permanent=True) from None
    return url


def display_address(config: ConnectionConfig) -> str:
    """host:port/vhost for messages and logs (never credentials)."""
    url = URL(config.url)
    return f"{url.host}:{url.port}/{vhost_of(config)}"


def uses_tls(config: ConnectionConfig) -> bool:
    return config.tls.enabled or URL(config.url).scheme == "amqps"


async def connect(config: ConnectionConfig) -> aio_pika.abc.AbstractConnection:
    """Open one (non-robust) connection; the adapter reconnects lazily on its next call."""
    url = amqp_url(config)
    context = ssl_context(config.tls) if uses_tls(config) else None
    what = f"connect to {display_address(config)}"
    made: list[aio_pika.Connection] = []

    def remembered(*args: Any, **kwargs: Any) -> aio_pika.Connection:
        made.append(aio_pika.Connection(*args, **kwargs))
        return made[-1]

    try:
        with amqp_errors(what, config.timeout):
            return await aio_pika.connect(
                str(url),
                ssl_context=context,
                timeout=config.timeout,
                client_properties={"connection_name": "dlqadmin"},
                connection_class=remembered,
            )
    except BaseException:
        # aio-pika leaves a connection that failed to open unclosed; garbage collected later on
        # a thread without a loop, it warns "coroutine 'Connection.close' was never awaited".
        for conn in made:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), config.timeout)
        raise


# --------------------------------------------------------------------------------------------
# Errors

#: what the broker or network can throw at us; anything else (e.g. a bug) propagates unchanged.
AMQP_FAILURES = (
    amqp_exc.AMQPError,
    amqp_exc.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    TimeoutError,
)
#: channel errors that retrying the same call cannot fix.
PERMANENT_CHANNEL_ERRORS = (
    amqp_exc.ChannelNotFoundEntity,
    amqp_exc.ChannelAccessRefused,
    amqp_exc.ChannelPreconditionFailed,
)


def broker_error(exc: BaseException, what: str, timeout: float | None = None) -> BrokerError:
    """Classify a client-library exception: permanent (config or data problem) or transient."""
    if isinstance(exc, BrokerError):
        return exc
    if isinstance(exc, amqp_exc.AuthenticationError | amqp_exc.ProbableAuthenticationError):
        return BrokerError(f"{what}: authentication failed ({exc})", permanent=True)
    if isinstance(exc, PERMANENT_CHANNEL_ERRORS):
        return BrokerError(f"{what}: {exc}", permanent=True)
    if isinstance(exc, amqp_exc.ConnectionNotAllowed | ssl.SSLCertVerificationError):
        return BrokerError(f"{what}: {exc}", permanent=True)
    if isinstance(exc, amqp_exc.InvalidFrameError) and "Connection.Close" in str(exc):
        # aiormq reports the broker's refusal during the handshake (unknown vhost, no access) this way
        return BrokerError(
            f"{what}: the broker refused the connection (unknown virtual host?)", permanent=True
        )
    if isinstance(exc, TimeoutError):
        after = f" after {timeout:g}s" if timeout else ""
        return BrokerError(f"{what}: timed out{after}", permanent=False)
    return BrokerError(f"{what}: {readable(exc)}", permanent=False)


#: aiormq's "<Channel: "1" at 0x7f..> closed" / "<Connection: ...> closed" (an object's repr)
_CLOSED_OBJECT = re.compile(r"<(\w+)\b[^<>]*> closed")


def readable(exc: BaseException) -> str:
    """The exception's text for an operator: an object repr in aiormq's "closed" errors (seen
    while a node shuts down) becomes what was closed."""
    text = str(exc) or type(exc).__name__
    closed = _CLOSED_OBJECT.fullmatch(text.strip())
    if closed:
        return f"the broker {closed.group(1).lower()} was closed (broker shutting down or connection lost)"
    return text


@contextlib.contextmanager
def amqp_errors(what: str, timeout: float | None = None) -> Iterator[None]:
    """Turn broker/network exceptions raised in the block into BrokerError (others pass through)."""
    try:
        yield
    except BrokerError:
        raise
    except AMQP_FAILURES as exc:
        raise broker_error(exc, what, timeout) from exc
