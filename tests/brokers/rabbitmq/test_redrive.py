"""RabbitMQ redrive: restored properties and headers, header policy, the default and the original
route, permanent failures that spoil nothing else, ordering, and an unreachable broker."""

from __future__ import annotations

import pytest
from aio_pika import DeliveryMode, ExchangeType, Message

from brokers.base import BrokerError, Destination, HeaderPolicy, Origin
from tests.brokers.contract import Sent, redrive_messages, run
from tests.brokers.rabbitmq.harness import RabbitMQHarness, wait_ready
from tests.conftest import unique


class TestRabbitMQRedrive(RabbitMQHarness):
    def test_redriven_copy_restores_properties_but_not_user_id_expiration_or_deaths(self):
        topo, sent_headers, props = run(self.rich_dead_letter())
        (m,) = self.harvest(topo.source)[0].messages
        (msg,) = redrive_messages([m])
        (outcome,) = self.redrive([msg])
        assert outcome.ok, outcome.error
        assert outcome.destination == f"exchange='' routing_key={topo.work_queue!r}"
        (copy,) = run(self.read_queue(topo.work_queue, 1))
        assert copy.body == b'{"order": 42}'
        assert copy.user_id is None and copy.expiration is None
        assert copy.delivery_mode == DeliveryMode.PERSISTENT
        for name in (
            "message_id",
            "correlation_id",
            "content_type",
            "content_encoding",
            "type",
            "app_id",
            "reply_to",
        ):
            assert getattr(copy, name) == props[name], name
        assert copy.timestamp == props["timestamp"] and copy.priority == 5
        got = copy.headers
        assert not [n for n in got if n.startswith(("x-death", "x-first-death", "x-last-death"))]
        assert not [n for n in got if n.startswith("x-exception-")]  # diagnostics stay in the DB
        assert got["x-retry-count"] == 3 and got["x-dlq-redrive-id"] == msg.redrive_id
        assert got["x-original-exchange"] == topo.work_exchange
        assert got["x-original-routingKey"] == "work"
        assert got["x-original-queue"] == topo.work_queue
        for name in (
            "int",
            "big",
            "neg",
            "dec",
            "when",
            "flag",
            "ratio",
            "nested",
            "list",
            "nothing",
            "blob",
            "text",
        ):
            assert got[name] == sent_headers[name] and type(got[name]) is type(sent_headers[name]), name
        assert got["raw"] == b"\xc3\x28"  # back as a non-UTF-8 long string, not a byte array

    def test_header_policy_strips_adds_and_mirrors_the_spring_retry_count(self):
        topo, _, _ = run(self.rich_dead_letter())
        (m,) = self.harvest(topo.source)[0].messages
        policy = HeaderPolicy(
            strip=["tenant", "NESTED"], extra={"x-dlq-reason": "manual"}, spring_retry_count=True
        )
        (outcome,) = self.redrive(redrive_messages([m]), header_policy=policy)
        assert outcome.ok, outcome.error
        (copy,) = run(self.read_queue(topo.work_queue, 1))
        got = copy.headers
        assert "tenant" not in got and "nested" not in got and got["int"] == 42
        assert got["x-dlq-reason"] == "manual"
        assert got["retry-count"] == 3 and got["x-retry-count"] == 3

        (outcome,) = self.redrive(redrive_messages([m]), header_policy=HeaderPolicy(copy_original=False))
        assert outcome.ok, outcome.error
        (bare,) = run(self.read_queue(topo.work_queue, 1))
        assert "int" not in bare.headers and bare.headers["x-retry-count"] == 3

    def test_default_target_is_the_failed_queue_and_original_route_fans_out(self):
        async def go():
            async with self.connection() as conn:
                channel = await conn.channel()
                topo = await self.topology(channel, work_type=ExchangeType.FANOUT)
                bystander = unique("rmq.bystander")
                self.queues.append(bystander)
                other = await channel.declare_queue(bystander)
                await other.bind(topo.work_exchange)
                exchange = await channel.get_exchange(topo.work_exchange)
                await exchange.publish(Message(b"fan"), routing_key="work")
                await self.reject_all(channel, topo.work_queue, 1)
                await wait_ready(channel, topo.dlq, 1)
                await other.purge()
                return topo, bystander

        topo, bystander = run(go())
        (m,) = self.harvest(topo.source)[0].messages
        (outcome,) = self.redrive(redrive_messages([m]))
        assert outcome.ok, outcome.error
        assert len(run(self.read_queue(topo.work_queue, 1))) == 1
        assert run(self.read_queue(bystander, 0, timeout=0.3)) == []

        (outcome,) = self.redrive(redrive_messages([m]), destination=Destination(use_original_route=True))
        assert outcome.ok, outcome.error
        assert outcome.destination == f"exchange={topo.work_exchange!r} routing_key='work'"
        assert len(run(self.read_queue(topo.work_queue, 1))) == 1
        assert len(run(self.read_queue(bystander, 1))) == 1

    def test_unroutable_or_missing_destination_is_a_permanent_failure(self):
        topo, _, _ = run(self.rich_dead_letter())
        (m,) = self.harvest(topo.source)[0].messages
        unroutable = Destination(exchange=topo.work_exchange, routing_key="nobody-listens")
        outcomes = self.redrive(redrive_messages([m, m]), destination=unroutable)
        assert [o.ok for o in outcomes] == [False, False]
        assert all(o.permanent and o.error.startswith("unroutable: no queue bound for") for o in outcomes)
        assert outcomes[0].destination == f"exchange={topo.work_exchange!r} routing_key='nobody-listens'"

        missing = unique("rmq.no-such-exchange")
        (outcome,) = self.redrive(redrive_messages([m]), destination=Destination(exchange=missing))
        assert not outcome.ok and outcome.permanent and "does not exist" in outcome.error

        # one unroutable message does not spoil the others published alongside it
        good, lost, good_too = redrive_messages([m, m, m])
        lost.origin = Origin(queue=unique("rmq.gone"))
        outcomes = self.redrive([good, lost, good_too])
        assert [(o.ok, o.permanent) for o in outcomes] == [(True, False), (False, True), (True, False)]
        assert len(run(self.read_queue(topo.work_queue, 2))) == 2

    def test_without_a_recorded_queue_the_original_route_is_the_default(self):
        """Spring AMQP's RepublishMessageRecoverer records the original exchange and routing key,
        never the queue: those are used, mandatory and confirmed (unroutable = permanent)."""
        topo, _, _ = run(self.rich_dead_letter())
        (m,) = self.harvest(topo.source)[0].messages
        spring, unroutable, nothing = redrive_messages([m, m, m])
        spring.origin = Origin(exchange=topo.work_exchange, routing_key="work")
        unroutable.origin = Origin(exchange=topo.work_exchange, routing_key="nobody-listens")
        nothing.origin = Origin()
        for i, msg in enumerate((spring, unroutable, nothing)):
            msg.properties = {**msg.properties, "message_id": f"m-{i}"}
        ok, lost, refused = self.redrive([spring, unroutable, nothing])
        assert ok.ok, ok.error
        assert ok.destination == f"exchange={topo.work_exchange!r} routing_key='work'"
        assert (lost.ok, lost.permanent) == (False, True) and lost.error.startswith("unroutable:")
        assert (refused.ok, refused.permanent) == (False, True)
        assert refused.error.startswith("needs a destination: no origin queue, exchange or routing key")
        (copy,) = run(self.read_queue(topo.work_queue, 1))
        assert copy.message_id == "m-0"

    def test_a_channel_error_fails_only_the_message_that_caused_it(self):
        topo, _, _ = run(self.rich_dead_letter())
        (m,) = self.harvest(topo.source)[0].messages
        internal = unique("rmq.internal")
        self.exchanges.append(internal)

        async def declare_internal():
            async with self.connection() as conn:
                channel = await conn.channel()
                await channel.declare_exchange(internal, ExchangeType.DIRECT, internal=True)

        run(declare_internal())
        bad, good, good_too = redrive_messages([m, m, m])
        # publishing to an internal exchange is refused and closes the channel under everything
        # in flight: the adapter republishes those one by one to tell the culprit apart
        bad.origin = Origin(exchange=internal, routing_key="work", queue=topo.work_queue)
        for i, msg in enumerate((bad, good, good_too)):  # distinct ids: all three share one window
            msg.properties = {**msg.properties, "message_id": f"m-{i}"}
        outcomes = self.redrive([bad, good, good_too], destination=Destination(use_original_route=True))
        assert [(o.ok, o.permanent) for o in outcomes] == [(False, True), (True, False), (True, False)]
        assert "ACCESS_REFUSED" in outcomes[0].error
        assert len(run(self.read_queue(topo.work_queue, 2))) == 2

    def test_many_redrives_are_confirmed_in_order(self):
        source = run(self.dead_letter([Sent(f"r-{i:03d}".encode()) for i in range(300)]))
        harvested = sorted(self.harvest(source)[0].messages, key=lambda m: m.payload)
        to_send = redrive_messages(harvested)
        outcomes = self.redrive(to_send)
        assert [o.ref for o in outcomes] == [m.ref for m in to_send]
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
        arrived = run(self.read_queue(self.work_queue_of[source.address], 300))
        assert sorted(m.body for m in arrived) == [m.payload for m in harvested]

    def test_redrive_to_an_unreachable_broker_raises_a_transient_error(self):
        topo, _, _ = run(self.rich_dead_letter())
        (m,) = self.harvest(topo.source)[0].messages
        with pytest.raises(BrokerError) as err:
            run(self.adapter_call("redrive", redrive_messages([m]), config=self.unreachable_config()))
        assert err.value.permanent is False
