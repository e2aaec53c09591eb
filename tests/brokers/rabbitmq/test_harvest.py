"""RabbitMQ harvest: stable positions across redeliveries and deaths, keeping or taking
messages, batches and prefetch, and a missing queue."""

from __future__ import annotations

import time

import pytest
from aio_pika import Message

from brokers import headers
from brokers.base import BrokerError, SourceSpec
from tests.brokers.contract import ListSink, Sent, redrive_messages, run
from tests.brokers.rabbitmq.harness import RabbitMQHarness, wait_ready
from tests.conftest import unique


class TestRabbitMQHarvest(RabbitMQHarness):
    def test_quorum_dlq_redelivery_after_a_crash_keeps_positions(self):
        """A quorum DLQ adds x-delivery-count on redelivery; the position must not change."""

        async def go():
            async with self.connection() as conn:
                channel = await conn.channel()
                topo = await self.topology(channel, dlq_args={"x-queue-type": "quorum"})
                exchange = await channel.get_exchange(topo.work_exchange)
                for body in (b"q-1", b"q-2"):
                    await exchange.publish(Message(body), routing_key="work")
                await self.reject_all(channel, topo.work_queue, 2)
                await wait_ready(channel, topo.dlq, 2)
                return topo

        topo = run(go())
        crashing = ListSink(fail_after_store=True)
        with pytest.raises(RuntimeError):
            self.harvest(topo.source, crashing)
        again, _ = self.harvest(topo.source)
        assert any(headers.get(m.headers, "x-delivery-count") for m in again.messages)
        assert {m.position for m in again.messages} == {m.position for m in crashing.messages}

    def test_a_real_second_death_gets_a_new_position(self):
        topo, _, _ = run(self.rich_dead_letter())
        (first,) = self.harvest(topo.source)[0].messages
        (outcome,) = self.redrive(redrive_messages([first]))
        assert outcome.ok, outcome.error

        async def die_again():
            async with self.connection() as conn:
                channel = await conn.channel()
                await self.reject_all(channel, topo.work_queue, 1)
                await wait_ready(channel, topo.dlq, 1)

        run(die_again())
        (second,) = self.harvest(topo.source)[0].messages
        assert second.position != first.position
        assert second.retry_count == 3  # redriven with x-retry-count 2 + 1
        assert headers.get(second.headers, "x-original-queue") == topo.work_queue

    def test_keeping_messages_requeues_them_after_one_pass(self):
        source = run(self.dead_letter([Sent(f"keep-{i}".encode()) for i in range(3)]))
        source.remove_after_harvest = False
        first, result = self.harvest(source, batch_size=2)
        assert result.received == 3 and result.batches == 2 and result.exhausted
        assert result.backlog == 3
        second, _ = self.harvest(source)
        assert sorted(m.position for m in second.messages) == sorted(m.position for m in first.messages)
        assert all(m.properties["redelivered"] for m in second.messages)

        with pytest.raises(RuntimeError, match="simulated crash"):
            self.harvest(source, ListSink(fail_after_store=True))
        assert run(self.adapter_call("backlog", source)) == 3

        source.remove_after_harvest = True
        taken, result = self.harvest(source)
        assert len(taken.messages) == 3 and result.backlog == 0
        assert run(self.adapter_call("backlog", source)) == 0

    def test_harvest_drains_many_messages_promptly_in_batches(self):
        source = run(self.dead_letter([Sent(f"bulk-{i}".encode()) for i in range(300)]))
        assert run(self.adapter_call("backlog", source)) == 300
        started = time.monotonic()
        sink, result = self.harvest(source, batch_size=100)
        assert time.monotonic() - started < 5
        assert result.received == 300 and result.batches == 3 and result.exhausted and result.backlog == 0
        assert len({m.position for m in sink.messages}) == 300

    def test_prefetch_option_larger_than_the_batch_loses_nothing(self):
        source = run(self.dead_letter([Sent(f"pf-{i}".encode()) for i in range(7)]))
        source.options["prefetch"] = 50
        sink, result = self.harvest(source, limit=4, batch_size=3)
        assert [len(b) for b in sink.batches] == [3, 1]
        rest, _ = self.harvest(source)
        assert len(sink.messages) + len(rest.messages) == 7
        assert {m.payload for m in sink.messages + rest.messages} == {f"pf-{i}".encode() for i in range(7)}

    def test_missing_queue_is_a_permanent_error(self):
        source = SourceSpec(name="x", mode="queue", address=unique("rmq.missing"))
        with pytest.raises(BrokerError) as err:
            self.harvest(source)
        assert err.value.permanent and "does not exist" in str(err.value)
        with pytest.raises(BrokerError) as err:
            run(self.adapter_call("backlog", source))
        assert err.value.permanent
