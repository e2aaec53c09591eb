"""Real dlqadmin processes for a run: a Celery worker and the follow-mode harvester, started like
production starts them, on the bench database and a Celery queue of the run's own; plus /proc
sampling of their memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .config import ROOT


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(p) for p in task.read_text().split()]
        except OSError:
            continue
    return found


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    return tree


def status_kib(pid: int, field: str) -> int:
    """A ``VmRSS`` / ``VmHWM`` line of /proc/<pid>/status, in KiB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Process:
    """A subprocess in its own session (so stop() reaches every child), output to a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.log_start = self.log.tell()
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = self.output()[-2000:]
        raise RuntimeError(f"{self.proc.args[:4]} not ready (waited for {text!r}):\n{tail}")

    def output(self) -> str:
        """What this process wrote (the log file may hold earlier processes' output too)."""
        with open(self.log_path, "rb") as fh:
            fh.seek(self.log_start)
            return fh.read().decode(errors="replace")

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


def celery_worker(env: dict[str, str], queue: str, log_path: Path) -> Process:
    """One worker, one pool process (prefork), consuming only the run's queue; returns when ready."""
    worker = Process(
        [
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
        ],
        env,
        log_path,
    )
    worker.wait_for_log(" ready.", 60)
    return worker


def follow_harvester(env: dict[str, str], sources: list[str], log_path: Path) -> Process:
    """``manage.py harvest --follow`` on ``sources`` with its default poll interval."""
    args = [sys.executable, "manage.py", "harvest", "--follow"]
    for name in sources:
        args += ["--source", name]
    harvester = Process(args, env, log_path)
    harvester.wait_for_log("Harvesting continuously", 60)
    return harvester


class RssSampler:
    """Samples the summed VmRSS of a process tree every ``interval`` seconds in a thread; also
    keeps each process's own peak (VmHWM, read before it exits)."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval = pid, interval
        self.peak_tree_kib = 0
        self.peak_process_kib: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        total = 0
        for pid in process_tree(self.pid):
            total += status_kib(pid, "VmRSS")
            self.peak_process_kib[pid] = max(self.peak_process_kib.get(pid, 0), status_kib(pid, "VmHWM"))
        self.peak_tree_kib = max(self.peak_tree_kib, total)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    @property
    def peak_single_kib(self) -> int:
        return max(self.peak_process_kib.values(), default=0)
