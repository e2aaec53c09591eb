"""A small TCP proxy for fault tests: put it in front of a service, then cut and restore it.

``cut()`` closes the listening socket and every open connection (both sides), so clients see
their connection drop and new connections refused, exactly as if the service went away;
``restore()`` listens again on the same port. ``pause()`` keeps every connection open but
forwards nothing (a broker that hangs: requests and confirms wait) until ``resume()``. Threads
only (one acceptor, two pumps per connection); everything is closed by ``close()``.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1", port: int = 0):
        self.target = (target_host, target_port)
        self.host = listen_host
        self.port = port
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.accepted = 0
        self._flowing = threading.Event()
        self._flowing.set()

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        self._spawn(self._accept, listener)
        return self

    def cut(self) -> None:
        """Stop listening and drop every connection (the service 'disappears')."""
        with self._lock:
            listener, self._listener = self._listener, None
            open_sockets, self._sockets = self._sockets, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in open_sockets:
            _close(sock)
        self._join()

    def restore(self) -> None:
        """Listen again on the same port."""
        if self._listener is None:
            self.start()

    def pause(self) -> None:
        """Hold every byte in both directions (connections stay open, new ones are accepted)."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._flowing.set()
        self.cut()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._sockets) // 2

    # ---- internals -----------------------------------------------------------------------------

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _join(self) -> None:
        threads, self._threads = self._threads, []
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(5)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut() raced with this accept
                    _close(client)
                    _close(upstream)
                    return
                self._sockets |= {client, upstream}
                self.accepted += 1
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
