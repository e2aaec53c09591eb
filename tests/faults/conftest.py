"""Fixtures for fault tests: real product processes and private brokers, always cleaned up."""

from __future__ import annotations

import contextlib

import pytest

from tests.support import processes
from tests.support.nats import delete_streams
from tests.support.private_brokers import PrivateRabbit, PrivateTansu, RestartableNats


def _tail(proc: processes.Proc, lines: int = 40) -> str:
    return "\n".join(proc.log().splitlines()[-lines:])


@pytest.fixture
def harvesters(tmp_path):
    """``start(source_or_names, db_url=None, **kw)`` runs ``manage.py harvest --follow`` for one
    source (or a list of source names); every harvester still running at the end is killed, and
    the log tails are printed."""
    started: list[processes.Proc] = []

    def start(source, db_url: str | None = None, **kw) -> processes.Proc:
        names = source if isinstance(source, list) else source.name
        proc = processes.start_harvester(
            names, tmp_path / f"harvester-{len(started)}.log", db_url=db_url, **kw
        )
        started.append(proc)
        return proc

    yield start
    for i, proc in enumerate(started):
        if proc.alive():
            proc.kill9()
        print(f"--- harvester {i} (exit {proc.proc.returncode}) ---\n{_tail(proc)}")


@pytest.fixture
def workers(tmp_path, celery_queue):
    started: list[processes.Proc] = []

    def start(**env) -> processes.Proc:
        proc = processes.start_celery_worker(celery_queue, tmp_path / f"worker-{len(started)}.log", **env)
        started.append(proc)
        return proc

    yield start
    for i, proc in enumerate(started):
        proc.stop(15)
        print(f"--- worker {i} (exit {proc.proc.returncode}) ---\n{_tail(proc, 60)}")


@pytest.fixture
def nats_streams():
    """(url, stream) pairs to delete at the end (a private server may already be gone)."""
    created: list[tuple[str, str]] = []
    yield created
    with contextlib.suppress(Exception):
        delete_streams_run(created)


def delete_streams_run(created) -> None:
    import asyncio

    asyncio.run(delete_streams(created))


@pytest.fixture
def private_nats():
    server = RestartableNats()
    yield server
    server.destroy()


@pytest.fixture
def private_rabbit():
    node = PrivateRabbit()
    try:
        node.start()
        yield node
    finally:
        node.destroy()


@pytest.fixture
def private_tansu():
    broker = PrivateTansu()
    try:
        yield broker.start()
    finally:
        broker.destroy()
