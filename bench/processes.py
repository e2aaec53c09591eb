"""Real dlqadmin processes for a run: a Celery worker and the follow-mode harvester, started like
production starts them (:mod:`devtools.processes`, shared with the tests), on the bench database
and a Celery queue of the run's own; plus /proc sampling of their memory."""

from __future__ import annotations

import threading
from pathlib import Path

from devtools.processes import SessionProcess, celery_worker_argv, harvester_argv


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


def celery_worker(env: dict[str, str], queue: str, log_path: Path) -> SessionProcess:
    """One worker, one pool process (prefork), consuming only the run's queue; returns when ready."""
    worker = SessionProcess(celery_worker_argv(queue), log_path, env)
    worker.wait_for_log(" ready.", 60)
    return worker


def follow_harvester(env: dict[str, str], sources: list[str], log_path: Path) -> SessionProcess:
    """``manage.py harvest --follow`` on ``sources`` with its default poll interval."""
    harvester = SessionProcess(harvester_argv(*sources), log_path, env)
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
