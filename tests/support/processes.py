"""Real product processes for fault tests: the follow-mode harvester and a Celery worker.

Both run against the pytest test database (``DATABASE_URL`` built from Django's connection
settings, or any URL given, e.g. one through :mod:`tests.support.tcp_proxy`), each in a session
of its own so ``kill9()`` takes the whole process group and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def database_url(host: str | None = None, port: int | None = None) -> str:
    """The URL of the database the running test uses (optionally through another host/port)."""
    from django.db import connection

    db = connection.settings_dict
    host = host or db["HOST"] or "127.0.0.1"
    return f"postgres://{db['USER']}@{host}:{port or db['PORT'] or 5432}/{db['NAME']}"


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class Proc:
    """A child process in its own session, logging to ``log_path``."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str]):
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()/kill9()
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_harvester(
    source_name: str, log_path: Path, *, db_url: str | None = None, poll_interval: float = 0.1
) -> Proc:
    """``manage.py harvest --follow --source NAME`` against the test database."""
    env = {**os.environ, "DATABASE_URL": db_url or database_url()}
    argv = [
        sys.executable,
        "manage.py",
        "harvest",
        "--follow",
        "--source",
        source_name,
        "--poll-interval",
        str(poll_interval),
    ]
    return Proc(argv, log_path, env)


def start_celery_worker(queue: str, log_path: Path, **env_extra: str) -> Proc:
    """One Celery worker (concurrency 1) consuming only ``queue``."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        **env_extra,
    }
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "dlqadmin",
        "worker",
        "-Q",
        queue,
        "--concurrency",
        "1",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    return Proc(argv, log_path, env)
