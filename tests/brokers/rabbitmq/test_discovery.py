"""RabbitMQ discovery: dead-letter queues found by queue argument, by policy and by dead-letter
routing key, and without the management API."""

from __future__ import annotations

import time

import pytest
from aio_pika import Message

from brokers.base import BrokerError
from tests.brokers.contract import run
from tests.brokers.rabbitmq.harness import RabbitMQHarness, management, wait_ready
from tests.conftest import unique


class TestRabbitMQDiscovery(RabbitMQHarness):
    def test_discover_finds_dead_letter_targets_by_argument_and_by_policy(self):
        async def go():
            async with self.connection() as conn:
                channel = await conn.channel()
                by_arg = await self.topology(channel, dlq_name=unique("rmq.sink-a"))
                by_policy = await self.topology(
                    channel, dlq_name=unique("rmq.sink-b"), with_dlx_argument=False
                )
                by_key = unique("rmq.sink-c")  # DLX "" + dead-letter routing key: straight to a queue
                self.queues += [by_key, f"{by_key}.src"]
                await channel.declare_queue(by_key)
                await channel.declare_queue(
                    f"{by_key}.src",
                    arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": by_key},
                )
                exchange = await channel.get_exchange(by_arg.work_exchange)
                await exchange.publish(Message(b"x"), routing_key="work")
                await self.reject_all(channel, by_arg.work_queue, 1)
                await wait_ready(channel, by_arg.dlq, 1)
                return by_arg, by_policy, by_key

        by_arg, by_policy, by_key = run(go())
        policy = unique("rmq-policy").replace(".", "-")
        self.policies.append(policy)
        pattern = "^" + by_policy.work_queue.replace(".", r"\.") + "$"
        management(
            "PUT",
            f"/api/policies/%2F/{policy}",
            {"pattern": pattern, "definition": {"dead-letter-exchange": by_policy.dlx}, "apply-to": "queues"},
        )
        deadline = time.monotonic() + 10
        while True:
            found = {d.address: d for d in run(self.adapter_call("discover"))}
            if by_policy.dlq in found or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert by_arg.dlq in found and by_policy.dlq in found
        assert by_arg.dlx in found[by_arg.dlq].reason and "argument" in found[by_arg.dlq].reason
        assert found[by_arg.dlq].messages == 1 and found[by_arg.dlq].mode == "queue"
        assert by_policy.dlx in found[by_policy.dlq].reason and "policy" in found[by_policy.dlq].reason
        assert "dead-letter routing key" in found[by_key].reason and f"{by_key}.src" in found[by_key].reason
        assert by_arg.work_queue not in found

    def test_discover_without_the_management_api(self):
        no_api = self.config(options={"management_url": "http://127.0.0.1:1"}, timeout=2)
        assert run(self.adapter_call("discover", config=no_api)) == []
        nothing = self.config(
            url="amqp://127.0.0.1:1/", options={"management_url": "http://127.0.0.1:1"}, timeout=2
        )
        with pytest.raises(BrokerError) as err:
            run(self.adapter_call("discover", config=nothing))
        assert err.value.permanent is False
