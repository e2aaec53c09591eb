"""A malformed connection URL is a permanent BrokerError (never a ValueError), and health() never raises."""

import asyncio

import pytest

from brokers import get_adapter
from brokers.base import BrokerError, ConnectionConfig, SourceSpec
from tests.brokers.contract import ListSink

BAD = [
    ("rabbitmq", "amqp://[::1", "queue"),
    ("rabbitmq", "amqp://127.0.0.1:99999/", "queue"),
    ("rabbitmq", "http://127.0.0.1:5672/", "queue"),
    ("nats", "nats://[::1", "advisory"),
    ("nats", "nats://127.0.0.1:99999", "advisory"),
    ("nats", "http://127.0.0.1:4222", "advisory"),
]


@pytest.mark.parametrize(("kind", "url", "mode"), BAD)
def test_a_malformed_url_is_a_permanent_broker_error(kind, url, mode):
    async def go():
        async with get_adapter(ConnectionConfig(kind=kind, url=url, timeout=2)) as adapter:
            health = await adapter.health()
            assert not health.ok and health.error
            with pytest.raises(BrokerError) as err:
                await adapter.harvest(SourceSpec(name="x", mode=mode, address="q"), ListSink())
            assert err.value.permanent
            with pytest.raises(BrokerError):
                await adapter.discover()

    asyncio.run(go())
