"""The process's one sync/async bridge and its one cache of broker clients.

* **Bridge:** :func:`run` runs a coroutine from sync code (views, API, services, management
  commands, Celery tasks) on one long-lived event loop per process, in a background thread.
  ``sync_to_async`` callables awaited inside it (a harvest sink, ``live`` events) run back on the
  calling thread, so the ORM keeps that thread's connection and transaction (the way
  ``asgiref.sync.async_to_sync`` does it, but without a new loop per call). :func:`submit` starts
  a coroutine and returns a future at once (redrive chunks publish while the caller records the
  previous one); such coroutines must not call the ORM or any ``sync_to_async`` callable. Code
  already running on an event loop awaits adapters directly: calling :func:`run` from a thread
  with a running loop raises ``RuntimeError``.
* **Cache:** :func:`adapter` hands out the same adapter for the same connection settings until it
  breaks, and :func:`client` the same helper client (Kafka's idempotent producers), one table
  for both: at most :data:`MAX_CLIENTS`, the least recently used closed first, any idle for
  :data:`IDLE_SECONDS` closed. A caller that saw a transient failure calls :func:`discard`, so
  the retry starts from a new connection.
* **fork():** a child never touches its parent's loop, thread, sockets or librdkafka handles
  (Celery's prefork pool forks after the parent may have used them): :func:`os.register_at_fork`
  resets the state in the child, keeping the parent's objects referenced but unused (closing them
  from the child would send close frames on the parent's connections).
* **Exit:** :func:`close` (registered with :mod:`atexit`; Celery's pool processes call it on
  shutdown) closes every kept client and stops the loop.
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

from asgiref.sync import SyncToAsync, async_to_sync

if TYPE_CHECKING:
    from .base import BrokerAdapter, ConnectionConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

#: clients unused for this long are closed (they hold a broker connection each).
IDLE_SECONDS = 300.0
#: at most this many clients (adapters and Kafka producers) are kept; the least recently used
#: one is closed first.
MAX_CLIENTS = 32
#: seconds :func:`close` waits for clients to close.
CLOSE_TIMEOUT = 5.0


class _State:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()  # guards loop and thread
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.clients_lock = threading.Lock()
        #: (role, *fingerprint) -> (client, last used, monotonic seconds); LRU order.
        self.clients: OrderedDict[tuple, tuple[Any, float]] = OrderedDict()


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


# ---- the bridge ------------------------------------------------------------------------------


def run(fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` on the process's broker loop and wait for its result.

    While it runs, the calling thread serves the ``sync_to_async`` calls the coroutine makes
    (a harvest sink, ``live`` events), so the ORM stays on the caller's connection. Raises
    ``RuntimeError`` when called from a thread running an event loop (await ``fn`` there).
    """
    loop = _loop()
    # async_to_sync, called from a thread that belongs to a loop (as in a sync_to_async thread
    # under ASGI), schedules the coroutine on that loop and runs the coroutine's sync_to_async
    # calls on the calling thread. Pointing it at the broker loop gives one loop per process
    # instead of one per call (asgiref's own new-loop path).
    local = SyncToAsync.threadlocal
    saved = getattr(local, "main_event_loop", None), getattr(local, "main_event_loop_pid", None)
    local.main_event_loop, local.main_event_loop_pid = loop, os.getpid()
    try:
        return async_to_sync(fn)(*args, **kwargs)
    finally:
        local.main_event_loop, local.main_event_loop_pid = saved


def submit(fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
    """Start ``fn(*args, **kwargs)`` on the process's broker loop; returns a future at once. The
    coroutine must not call the ORM or a ``sync_to_async`` callable (nobody serves them)."""
    loop = _loop()
    if _state.thread is threading.current_thread():
        raise RuntimeError("brokers.shared.submit() called from the broker loop itself")
    return asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), loop)


# ---- the cache -------------------------------------------------------------------------------


def fingerprint(config: ConnectionConfig) -> tuple:
    """Equal for equal connection settings (credentials included: an edited password makes a new
    client)."""
    options = json.dumps(config.options, sort_keys=True, default=str)
    return (config.kind, config.url, config.username, config.password, config.tls, options, config.timeout)


def _take(key: tuple, make: Callable[[], T]) -> tuple[T, list[Any]]:
    """The kept client for ``key`` (made on first use), and the clients to close now: idle ones
    and the least recently used beyond :data:`MAX_CLIENTS`. Thread-safe; never awaits, so a
    concurrent caller always finds the client this one made."""
    state, now = _state, time.monotonic()
    with state.clients_lock:
        clients = state.clients
        entry = clients.get(key)
        found = entry[0] if entry else make()
        clients[key] = (found, now)
        clients.move_to_end(key)
        stale = [k for k, (_, used) in clients.items() if k != key and now - used > IDLE_SECONDS]
        excess = len(clients) - len(stale) - MAX_CLIENTS
        for k in clients:  # least recently used first
            if excess <= 0:
                break
            if k != key and k not in stale:
                stale.append(k)
                excess -= 1
        return found, [clients.pop(k)[0] for k in stale]


async def adapter(config: ConnectionConfig) -> BrokerAdapter:
    """The kept adapter for ``config``, created on first use. Call only on the broker loop (an
    adapter's connection belongs to the loop that opened it)."""
    from . import get_adapter  # noqa: PLC0415 - brokers/__init__ imports this module

    found, stale = _take(("adapter", *fingerprint(config)), lambda: get_adapter(config))
    for old in stale:
        await _close_quietly(old)
    return found


def client(role: str, config: ConnectionConfig, make: Callable[[], T]) -> T:
    """The kept ``role`` client for ``config`` (e.g. ``"kafka-producer"``), made by ``make()`` on
    first use. Callable from any thread or loop: the client must not belong to an event loop
    and has an ``async close()``. Clients it evicts are closed on the broker loop."""
    found, stale = _take((role, *fingerprint(config)), make)
    if stale:
        loop = _loop()
        for old in stale:
            asyncio.run_coroutine_threadsafe(_close_quietly(old), loop)
    return found


async def discard(config: ConnectionConfig, found: BrokerAdapter | None = None) -> None:
    """Close and forget the adapter for ``config`` (after a transient failure: the next call
    connects afresh). With ``found``, only that adapter: one a concurrent caller already
    replaced stays kept. Call only on the broker loop."""
    key = ("adapter", *fingerprint(config))
    with _state.clients_lock:
        entry = _state.clients.get(key)
        if entry is not None and (found is None or entry[0] is found):
            del _state.clients[key]
            found = entry[0]
    if found is not None:
        await _close_quietly(found)


def cached() -> int:
    """How many clients this process keeps open (for tests and diagnostics)."""
    return len(_state.clients)


async def _close_quietly(found: Any) -> None:
    try:
        await asyncio.wait_for(found.close(), CLOSE_TIMEOUT)
    except Exception:  # noqa: BLE001 - closing a broken connection may fail in any way
        log.debug("closing a kept %s failed", type(found).__name__, exc_info=True)


async def _close_all() -> None:
    while True:
        with _state.clients_lock:
            if not _state.clients:
                return
            _, (found, _) = _state.clients.popitem(last=False)
        await _close_quietly(found)


def close() -> None:
    """Close every kept client and stop the loop (the next call starts a new one). Safe to call
    twice, and in a process that never used the loop."""
    state = _state
    if state.pid != os.getpid():
        return
    if state.clients:
        _loop()  # clients made outside the loop (Kafka producers) are closed on it too
    with state.lock:
        loop, thread = state.loop, state.thread
        state.loop = state.thread = None
    if loop is None or loop.is_closed():
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
