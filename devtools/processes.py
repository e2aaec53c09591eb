"""Real dlqadmin processes started the way production starts them: the follow-mode harvester
and a Celery worker, each in a session of its own so a signal reaches every process it forked
and nothing else. Used by the fault tests (``tests/support/processes.py``) and the benchmarks
(``bench/processes.py``); the caller supplies the environment (database, Celery queue)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class SessionProcess:
    """A subprocess in its own session (so ``stop()`` and ``kill9()`` reach every child), output
    appended to ``log_path``."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str]):
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()/kill9()
        self._log_start = self._log.tell()
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
        """The whole log file (earlier processes' output included when it was reused)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def output(self) -> str:
        """What this process wrote (the log file may hold earlier processes' output too)."""
        with open(self.log_path, "rb") as fh:
            fh.seek(self._log_start)
            return fh.read().decode(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Return once this process wrote ``text``; raise RuntimeError (with the output's tail) if
        it exits or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = self.output()[-2000:]
        raise RuntimeError(f"{self.proc.args[:4]} not ready (waited for {text!r}):\n{tail}")


def harvester_argv(*sources: str, poll_interval: float | None = None) -> list[str]:
    """``manage.py harvest --follow`` on ``sources`` (the default poll interval unless given)."""
    argv = [sys.executable, "manage.py", "harvest", "--follow"]
    for name in sources:
        argv += ["--source", name]
    if poll_interval is not None:
        argv += ["--poll-interval", str(poll_interval)]
    return argv


def celery_worker_argv(queue: str) -> list[str]:
    """One Celery worker, one pool process (prefork), consuming only ``queue``."""
    return [
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
