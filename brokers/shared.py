"""One broker event loop per process, in a background thread, with adapters kept open across calls.

``brokers.run`` starts a fresh event loop for every call, so an adapter used through it connects
again each time (RabbitMQ: TCP + AMQP handshake; NATS: TCP + INFO/CONNECT/PING). A redrive job
publishes chunk after chunk to the same broker: :func:`call` and :func:`submit` run coroutines on
one long-lived loop instead, where :func:`adapter` hands out the same adapter for the same
connection settings until it breaks.

* **Health:** adapters reconnect lazily when their connection was lost (RabbitMQ, NATS) or let
  librdkafka reconnect (Kafka). A caller that saw a transient failure calls :func:`discard`, so
  the retry starts from a new connection. Adapters idle for :data:`IDLE_SECONDS` are closed.
* **fork():** a child never touches its parent's loop, thread or sockets (Celery's prefork pool
  forks after the parent may have used them): :func:`os.register_at_fork` resets the state in the
  child, keeping the parent's objects referenced but unused (closing them from the child would
  send close frames on the parent's connections).
* **Exit:** :func:`close` (registered with :mod:`atexit`; Celery's pool processes call it on
  shutdown) closes every adapter and stops the loop.

Unlike ``brokers.run``, coroutines here run on another thread: they must not call the ORM or any
``sync_to_async`` callable (a harvest sink). Redrive needs neither: the caller builds the messages
and records the outcomes on its own thread.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .base import BrokerAdapter, ConnectionConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

#: adapters unused for this long are closed (they hold a broker connection each).
IDLE_SECONDS = 300.0
#: at most this many adapters are kept; the least recently used one is closed first.
MAX_ADAPTERS = 16
#: seconds :func:`close` waits for adapters to close.
CLOSE_TIMEOUT = 5.0


class _State:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        #: fingerprint -> (adapter, last used, monotonic seconds); touched only on the loop.
        self.adapters: OrderedDict[tuple, tuple[BrokerAdapter, float]] = OrderedDict()


_state = _State()
#: what forked children inherited from their parent: kept referenced so that garbage collection
#: never closes (and so shuts down) sockets the parent still uses.
_inherited: list[_State] = []


def _after_fork_in_child() -> None:
    global _state
    _inherited.append(_state)
    _state = _State()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _loop() -> asyncio.AbstractEventLoop:
    state = _state
    with state.lock:
        if state.loop is None or state.loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=serve, name="dlqadmin-broker-loop", daemon=True)
            thread.start()
            ready.wait()
            state.loop, state.thread = loop, thread
        return state.loop


def submit(fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
    """Start ``fn(*args, **kwargs)`` on the process's broker loop; returns a future at once."""
    loop = _loop()
    if _state.thread is threading.current_thread():
        raise RuntimeError("brokers.shared.submit() called from the broker loop itself")
    return asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), loop)


def call(fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` on the process's broker loop and wait for its result."""
    return submit(fn, *args, **kwargs).result()


def fingerprint(config: ConnectionConfig) -> tuple:
    """Equal for equal connection settings (credentials included: an edited password makes a new
    adapter)."""
    options = json.dumps(config.options, sort_keys=True, default=str)
    return (config.kind, config.url, config.username, config.password, config.tls, options, config.timeout)


async def adapter(config: ConnectionConfig) -> BrokerAdapter:
    """The loop's adapter for ``config``, created on first use. Call only on the broker loop."""
    from . import get_adapter  # noqa: PLC0415 - brokers/__init__ imports this module

    adapters, now = _state.adapters, time.monotonic()
    key = fingerprint(config)
    entry = adapters.get(key)
    found = entry[0] if entry else get_adapter(config)
    adapters[key] = (found, now)
    adapters.move_to_end(key)
    # The table is consistent before the first await: a concurrent caller finds this adapter.
    stale = [k for k, (_, used) in adapters.items() if k != key and now - used > IDLE_SECONDS]
    excess = len(adapters) - len(stale) - MAX_ADAPTERS
    for k in adapters:  # least recently used first
        if excess <= 0:
            break
        if k != key and k not in stale:
            stale.append(k)
            excess -= 1
    for old in [adapters.pop(k)[0] for k in stale]:
        await _close_quietly(old)
    return found


async def discard(config: ConnectionConfig) -> None:
    """Close and forget the adapter for ``config`` (after a transient failure: the next call
    connects afresh). Call only on the broker loop."""
    entry = _state.adapters.pop(fingerprint(config), None)
    if entry is not None:
        await _close_quietly(entry[0])


def cached() -> int:
    """How many adapters this process keeps open (for tests and diagnostics)."""
    return len(_state.adapters)


async def _close_quietly(found: BrokerAdapter) -> None:
    try:
        await asyncio.wait_for(found.close(), CLOSE_TIMEOUT)
    except Exception:  # noqa: BLE001 - closing a broken connection may fail in any way
        log.debug("closing a cached %s adapter failed", found.kind, exc_info=True)


async def _close_all() -> None:
    while _state.adapters:
        _, (found, _) = _state.adapters.popitem(last=False)
        await _close_quietly(found)


def close() -> None:
    """Close every cached adapter and stop the loop (the next call starts a new one). Safe to
    call twice, and in a process that never used the loop."""
    state = _state
    with state.lock:
        loop, thread = state.loop, state.thread
        state.loop = state.thread = None
    if loop is None or loop.is_closed() or state.pid != os.getpid():
        return
    if thread is not None and thread.is_alive() and thread is not threading.current_thread():
        future = asyncio.run_coroutine_threadsafe(_close_all(), loop)
        with contextlib.suppress(Exception):
            future.result(CLOSE_TIMEOUT + 1)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CLOSE_TIMEOUT)
    if not loop.is_running():
        loop.close()


atexit.register(close)
