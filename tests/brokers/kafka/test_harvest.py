"""Kafka harvest: rewinding to an offset or a time, and the errors a harvest raises."""

from __future__ import annotations

import time

import pytest

from brokers import get_adapter
from brokers.base import BrokerError, ConnectionConfig
from tests.brokers.contract import ListSink, Sent, run
from tests.brokers.kafka.harness import KafkaHarness
from tests.conftest import unique
from tests.support.kafka import config, fresh_source, harvest, topic_exists


class TestKafkaHarvest(KafkaHarness):
    def test_rewind_rereads_the_same_positions(self):
        before = int(time.time() * 1000) - 1000
        source = run(self.dead_letter([Sent(f"r{i}".encode()) for i in range(3)]))

        async def go():
            async with get_adapter(config()) as adapter:
                backlog_before = await adapter.backlog(source)
                first = await harvest(source, adapter)
                backlog_after = await adapter.backlog(source)
                empty = await harvest(source, adapter)
                await adapter.rewind(source, offset=1)
                from_one = await harvest(source, adapter)
                await adapter.rewind(source, timestamp_ms=before)
                by_time = await harvest(source, adapter)
                return backlog_before, first, backlog_after, empty, from_one, by_time

        backlog_before, first, backlog_after, empty, from_one, by_time = run(go())
        positions = sorted(m.position for m in first.messages)
        assert len(positions) == 3
        # tansu under-reports the high watermark (last batch base offset + 1): a lower bound
        assert backlog_before >= 1 and backlog_after == 0
        assert empty.messages == []
        assert sorted(m.position for m in from_one.messages) == positions[1:]
        assert sorted(m.position for m in by_time.messages) == positions
        assert source.cursor["offsets"] == {"0": 3}

    def test_unknown_topic_is_permanent_and_not_created(self):
        missing = unique("kafka") + "-dlt"
        with pytest.raises(BrokerError) as err:
            run(harvest(fresh_source(missing)))
        assert err.value.permanent and "does not exist" in str(err.value)
        assert not topic_exists(missing)

    def test_unreachable_broker_fails_within_the_timeout(self):
        async def go():
            async with get_adapter(ConnectionConfig(kind="kafka", url="127.0.0.1:1", timeout=2)) as adapter:
                started = time.monotonic()
                with pytest.raises(BrokerError) as err:
                    await adapter.harvest(fresh_source("anything"), ListSink())
                return err.value, time.monotonic() - started

        error, elapsed = run(go())
        assert error.permanent is False and elapsed < 5, (error, elapsed)
