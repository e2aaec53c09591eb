"""The demo's child processes: each in its own process group with its output in
``<state>/logs/<name>.log``, checked while running and stopped in order (apps first, brokers and
the database last)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from devtools.demo.console import DemoError, indent, say
from devtools.demo.paths import ROOT, shown


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
    #: what asks it to stop (PostgreSQL: SIGINT, its "fast" shutdown, not SIGTERM's "smart" one)
    stop_signal: int = signal.SIGTERM

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

    def start(
        self,
        name: str,
        args: list[str],
        extra_env: dict[str, str] | None = None,
        *,
        run_as: tuple[int, int] | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> Child:
        """Start ``args``; ``run_as`` (uid, gid) runs it as that user, without our groups."""
        child = Child(name, args, self.logs / f"{name}.log", stop_signal=stop_signal)
        user = {"user": run_as[0], "group": run_as[1], "extra_groups": []} if run_as else {}
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
                **user,
            )
        self.children.append(child)
        return child

    def run(
        self,
        name: str,
        args: list[str],
        timeout: float = 300,
        extra_env: dict[str, str] | None = None,
        *,
        run_as: tuple[int, int] | None = None,
    ) -> None:
        """Run a one-shot step to completion; its output goes to its log."""
        child = self.start(name, args, extra_env, run_as=run_as)
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
        brokers = [c for c in self.children if c.name in ("nats", "kafka", "postgres")]
        apps = [c for c in self.children if c not in brokers]
        for group, budget in ((apps, timeout), (brokers, 5.0)):
            for child in group:
                child.signal_group(child.stop_signal)
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
