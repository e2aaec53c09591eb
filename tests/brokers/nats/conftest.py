"""Fixtures of the NATS adapter tests: a private server and stream clean-up."""

from __future__ import annotations

import pytest

from tests.brokers import nats_server
from tests.brokers.contract import run
from tests.support.nats import delete_streams


@pytest.fixture(scope="session")
def private_nats():
    """A nats-server 2.15.x on a free port with max_payload 8 MB, stopped at the end."""
    server = nats_server.start()
    yield server
    server.stop()


@pytest.fixture
def streams():
    """Collects (url, stream) pairs to delete after the test."""
    created: list[tuple[str, str]] = []
    yield created
    run(delete_streams(created))
