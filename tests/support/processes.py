"""Real product processes for fault tests: the follow-mode harvester and a Celery worker.

Both run against the pytest test database (``DATABASE_URL`` built from Django's connection
settings, or any URL given, e.g. one through :mod:`tests.support.tcp_proxy`), each in a session
of its own so ``kill9()`` takes the whole process group and nothing else
(:mod:`devtools.processes`, shared with the benchmarks).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from devtools.processes import SessionProcess as Proc
from devtools.processes import celery_worker_argv, harvester_argv


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


def start_harvester(
    source_name: str | list[str],
    log_path: Path,
    *,
    db_url: str | None = None,
    poll_interval: float = 0.1,
    max_backoff: float | None = None,
) -> Proc:
    """``manage.py harvest --follow --source NAME [--source NAME ...]`` against the test database."""
    env = {**os.environ, "DATABASE_URL": db_url or database_url()}
    names = [source_name] if isinstance(source_name, str) else source_name
    argv = harvester_argv(*names, poll_interval=poll_interval)
    if max_backoff is not None:
        argv += ["--max-backoff", str(max_backoff)]
    return Proc(argv, log_path, env)


def start_celery_worker(queue: str, log_path: Path, **env_extra: str) -> Proc:
    """One Celery worker (concurrency 1) consuming only ``queue``."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        **env_extra,
    }
    return Proc(celery_worker_argv(queue), log_path, env)
