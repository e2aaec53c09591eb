"""The RabbitMQ adapter against the real broker: the shared contract plus RabbitMQ specifics.

Every test builds its own uniquely named exchanges and queues, produces genuine dead letters
(reject, TTL, length limit, quorum delivery limit) and deletes what it created.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import ssl
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aio_pika  # noqa: TID251 - the tests make real dead letters with the client library
import pytest
from aio_pika import DeliveryMode, ExchangeType, Message
from yarl import URL

import brokers
from brokers import get_adapter, headers
from brokers.base import (
    BrokerError,
    ConnectionConfig,
    Destination,
    HeaderPolicy,
    Origin,
    SourceSpec,
    TLSOptions,
)
from brokers.rabbitmq import RawLongStr, wire_value
from brokers.rabbitmq.connection import amqp_url, ssl_context, vhost_of
from tests.brokers.contract import AdapterContract, ListSink, Received, Sent, redrive_messages, run
from tests.conftest import AMQP_URL, unique

MANAGEMENT = f"http://{URL(AMQP_URL).host}:15672"  # the adapter's default management URL
NOW_TOLERANCE = timedelta(minutes=5)


@dataclass
class Topology:
    """work exchange --routing_key--> work queue --(dead-letter)--> dlx (fanout) --> dlq"""

    work_exchange: str
    work_queue: str
    dlx: str
    dlq: str
    routing_key: str = "work"

    @property
    def source(self) -> SourceSpec:
        return SourceSpec(name=self.dlq, mode="queue", address=self.dlq)


async def wait_ready(channel, queue: str, count: int, timeout: float = 10.0) -> None:
    """Poll until ``queue`` holds at least ``count`` ready messages (dead-lettering is async)."""
    deadline = time.monotonic() + timeout
    while True:
        declared = await channel.declare_queue(queue, passive=True)
        if declared.declaration_result.message_count >= count:
            return
        assert time.monotonic() < deadline, f"{queue} never reached {count} messages"
        await asyncio.sleep(0.02)


def management(method: str, path: str, body: dict | None = None) -> None:
    token = base64.b64encode(b"guest:guest").decode()
    request = urllib.request.Request(
        MANAGEMENT + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


class TestRabbitMQContract(AdapterContract):
    kind = "rabbitmq"

    # ---- hooks -------------------------------------------------------------------------------
    def config(self, **overrides) -> ConnectionConfig:
        fields = {"kind": "rabbitmq", "url": AMQP_URL, "username": "guest", "password": "guest", **overrides}
        return ConnectionConfig(**fields)

    def unreachable_config(self) -> ConnectionConfig:
        return self.config(url="amqp://127.0.0.1:1/", timeout=2)

    async def dead_letter(self, sent: list[Sent]) -> SourceSpec:
        async with self.connection() as conn:
            channel = await conn.channel()
            topo = await self.topology(channel)
            exchange = await channel.get_exchange(topo.work_exchange)
            for s in sent:
                # bytes header values go out as genuine non-UTF-8 long strings (wire type S)
                await exchange.publish(
                    Message(s.payload, headers=wire_value(s.headers)), routing_key=topo.routing_key
                )
            await self.reject_all(channel, topo.work_queue, len(sent))
            await wait_ready(channel, topo.dlq, len(sent))
        return topo.source

    async def read_redriven(self, source: SourceSpec, count: int, timeout: float = 10.0) -> list[Received]:
        messages = await self.read_queue(self.work_queue_of[source.address], count, timeout)
        return [Received(m.body, None, list((m.headers or {}).items())) for m in messages]

    # ---- fixtures and helpers ----------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _resources(self):
        self.queues: list[str] = []
        self.exchanges: list[str] = []
        self.policies: list[str] = []
        self.work_queue_of: dict[str, str] = {}
        yield
        for policy in self.policies:
            management("DELETE", f"/api/policies/%2F/{policy}")

        async def delete():
            async with self.connection() as conn:
                for name in self.queues:
                    channel = await conn.channel()
                    await channel.queue_delete(name)
                    await channel.close()
                for name in self.exchanges:
                    channel = await conn.channel()
                    await channel.exchange_delete(name)
                    await channel.close()

        run(delete())

    def connection(self):
        return _Connection(str(amqp_url(self.config())))

    async def topology(
        self,
        channel,
        *,
        work_args: dict | None = None,
        dlq_args: dict | None = None,
        work_type: ExchangeType = ExchangeType.DIRECT,
        dlq_name: str | None = None,
        with_dlx_argument: bool = True,
    ) -> Topology:
        base = unique("rmq")
        topo = Topology(f"{base}.work", f"{base}.work.q", f"{base}.dlx", dlq_name or f"{base}.dlq")
        self.exchanges += [topo.work_exchange, topo.dlx]
        self.queues += [topo.work_queue, topo.dlq]
        self.work_queue_of[topo.dlq] = topo.work_queue
        dlq_args = dict(dlq_args or {})
        work_args = dict(work_args or {})
        if with_dlx_argument:
            work_args["x-dead-letter-exchange"] = topo.dlx
        dlx = await channel.declare_exchange(topo.dlx, ExchangeType.FANOUT)
        dlq = await channel.declare_queue(
            topo.dlq, durable=dlq_args.get("x-queue-type") == "quorum", arguments=dlq_args
        )
        await dlq.bind(dlx)
        work = await channel.declare_exchange(topo.work_exchange, work_type)
        queue = await channel.declare_queue(
            topo.work_queue, durable=work_args.get("x-queue-type") == "quorum", arguments=work_args
        )
        await queue.bind(work, routing_key=topo.routing_key)
        return topo

    async def reject_all(self, channel, queue: str, count: int) -> None:
        work = await channel.get_queue(queue)
        for _ in range(count):
            message = await work.get(no_ack=False, timeout=5)
            await message.reject(requeue=False)

    async def read_queue(self, queue: str, count: int, timeout: float = 10.0) -> list:
        """Take what arrives in ``queue``: up to ``count``, then wait briefly for extras."""
        got = []
        async with self.connection() as conn:
            channel = await conn.channel()
            q = await channel.get_queue(queue)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                message = await q.get(no_ack=True, fail=False)
                if message is not None:
                    got.append(message)
                elif len(got) >= count:
                    deadline = min(deadline, time.monotonic() + 0.3)
                    await asyncio.sleep(0.05)
                else:
                    await asyncio.sleep(0.02)
        return got

    async def adapter_call(self, method: str, *args, config: ConnectionConfig | None = None, **kwargs):
        async with get_adapter(config or self.config()) as adapter:
            return await getattr(adapter, method)(*args, **kwargs)

    def harvest(self, source: SourceSpec, sink=None, **kw):
        return run(self.harvest_all(source, sink, **kw))

    def redrive(self, messages, **kw):
        return run(self.adapter_call("redrive", messages, **kw))

    async def rich_dead_letter(self, **topology_kw) -> tuple[Topology, dict, dict]:
        """One rejected message carrying every AMQP property and every header type."""
        when = datetime(2024, 5, 17, 12, 30, 45, tzinfo=UTC)
        sent_headers = {
            "int": 42,
            "big": 2**40,
            "neg": -7,
            "dec": Decimal("12.345"),
            "when": when,
            "flag": True,
            "ratio": 0.5,  # exact in the 32-bit float pamqp writes
            "nested": {"a": 1, "b": ["x", 2]},
            "list": [1, "two", False],
            "nothing": None,
            "blob": bytearray(b"\x00\x01\xff"),
            "raw": RawLongStr(b"\xc3\x28"),
            "text": "caf\u00e9",
            "tenant": "acme",
            "x-exception-fqcn": "com.example.OrderRejected",
            "x-exception-message": "order 42 has no lines",
            "x-exception-stacktrace": "com.example.OrderRejected: order 42\n\tat Orders.java:7",
            "x-retry-count": 2,
        }
        props = dict(
            message_id="m-42",
            correlation_id="c-42",
            content_type="application/json",
            content_encoding="identity",
            type="order.created",
            app_id="shop",
            timestamp=when,
            priority=5,
            reply_to="replies",
            delivery_mode=DeliveryMode.PERSISTENT,
            expiration=60,  # seconds: sent as "60000"
            user_id="guest",  # must be the publishing user
        )
        async with self.connection() as conn:
            channel = await conn.channel()
            topo = await self.topology(channel, **topology_kw)
            exchange = await channel.get_exchange(topo.work_exchange)
            await exchange.publish(
                Message(b'{"order": 42}', headers=sent_headers, **props), routing_key="work"
            )
            await self.reject_all(channel, topo.work_queue, 1)
            await wait_ready(channel, topo.dlq, 1)
        return topo, sent_headers, props

    # ---- dead-letter reasons -----------------------------------------------------------------
    def test_rejected_dead_letter_keeps_every_property_origin_and_header_type(self):
        topo, sent_headers, props = run(self.rich_dead_letter())
        sink, result = self.harvest(topo.source)
        (m,) = sink.messages
        assert result.received == 1 and result.exhausted and result.backlog == 0
        assert m.payload == b'{"order": 42}'
        assert m.reason == "rejected"
        assert (m.origin.queue, m.origin.exchange, m.origin.routing_key) == (
            topo.work_queue,
            topo.work_exchange,
            "work",
        )
        assert m.origin.routing_keys == ["work"]
        assert m.origin.extra["death_count"] == 1
        assert m.origin.extra["first_death"] == {
            "queue": topo.work_queue,
            "reason": "rejected",
            "exchange": topo.work_exchange,
        }
        (death,) = m.origin.extra["deaths"]
        assert death["reason"] == "rejected" and death["queue"] == topo.work_queue and death["count"] == 1
        assert death["original_expiration"] == "60000"  # the broker moved expiration into x-death
        assert abs(m.failed_at - datetime.now(UTC)) < NOW_TOLERANCE
        assert m.failed_at.isoformat() == death["time"]
        assert m.error_class == "com.example.OrderRejected"
        assert m.error_message == "order 42 has no lines"
        assert m.stacktrace.startswith("com.example.OrderRejected")
        assert m.retry_count == 2
        assert m.position.startswith(f"{topo.dlq}:") and len(m.position.rsplit(":", 1)[1]) == 64

        assert m.properties == {
            "message_id": "m-42",
            "correlation_id": "c-42",
            "content_type": "application/json",
            "content_encoding": "identity",
            "type": "order.created",
            "app_id": "shop",
            "timestamp": props["timestamp"].isoformat(),
            "priority": 5,
            "reply_to": "replies",
            "delivery_mode": 2,
            "expiration": None,
            "user_id": "guest",
            "cluster_id": None,
            "exchange": topo.dlx,
            "routing_key": "work",
            "redelivered": False,
        }
        types = {name: node["t"] for name, node in m.headers}
        assert types["x-death"] == "array" and types["x-first-death-reason"] == "str"
        assert {k: types[k] for k in sent_headers} == {
            "int": "int",
            "big": "int",
            "neg": "int",
            "dec": "decimal",
            "when": "timestamp",
            "flag": "bool",
            "ratio": "float",
            "nested": "table",
            "list": "array",
            "nothing": "void",
            "blob": "bytearray",
            "raw": "bytes",
            "text": "str",
            "tenant": "str",
            "x-exception-fqcn": "str",
            "x-exception-message": "str",
            "x-exception-stacktrace": "str",
            "x-retry-count": "int",
        }
        decoded = headers.decode_mapping(m.headers)
        for name, value in sent_headers.items():
            expected = value.raw if isinstance(value, RawLongStr) else value
            assert decoded[name] == expected and type(decoded[name]) is type(expected), name
        json.dumps([m.headers, m.properties, m.origin.extra])  # storable as JSON

    def test_per_message_ttl_dead_letters_with_reason_expired(self):
        async def go():
            async with self.connection() as conn:
                channel = await conn.channel()
                topo = await self.topology(channel)
                exchange = await channel.get_exchange(topo.work_exchange)
                await exchange.publish(Message(b"late", expiration=0.01), routing_key="work")
                await wait_ready(channel, topo.dlq, 1)
                return topo

        topo = run(go())
        (m,) = self.harvest(topo.source)[0].messages
        assert m.reason == "expired" and m.payload == b"late"
        assert m.origin.queue == topo.work_queue and m.origin.exchange == topo.work_exchange
        assert m.origin.extra["deaths"][0]["original_expiration"] == "10"
        assert m.properties["expiration"] is None

    def test_queue_length_limit_dead_letters_the_head_with_reason_maxlen(self):
        async def go():
            async with self.connection() as conn:
                channel = await conn.channel()
                topo = await self.topology(channel, work_args={"x-max-length": 1, "x-overflow": "drop-head"})
                exchange = await channel.get_exchange(topo.work_exchange)
                for body in (b"first", b"second"):
                    await exchange.publish(Message(body), routing_key="work")
                await wait_ready(channel, topo.dlq, 1)
                return topo

        topo = run(go())
        (m,) = self.harvest(topo.source)[0].messages
        assert m.reason == "maxlen" and m.payload == b"first"
        assert m.origin.queue == topo.work_queue and m.origin.routing_key == "work"

    def test_quorum_delivery_limit_dead_letters_with_reason_delivery_limit(self):
        async def go():
            async with self.connection() as conn:
                channel = await conn.channel()
                topo = await self.topology(
                    channel, work_args={"x-queue-type": "quorum", "x-delivery-limit": 1}
                )
                exchange = await channel.get_exchange(topo.work_exchange)
                await exchange.publish(
                    Message(b"poison", message_id="p-1", delivery_mode=DeliveryMode.PERSISTENT),
                    routing_key="work",
                )
                work = await channel.get_queue(topo.work_queue)
                deliveries = 0
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    message = await work.get(no_ack=False, fail=False)
                    if message is None:
                        if deliveries:
                            break
                        await asyncio.sleep(0.02)
                        continue
                    deliveries += 1
                    await message.nack(requeue=True)  # a consumer that keeps failing
                await wait_ready(channel, topo.dlq, 1)
                return topo, deliveries

        topo, deliveries = run(go())
        assert deliveries == 2  # limit 1: the first delivery plus one redelivery
        (m,) = self.harvest(topo.source)[0].messages
        assert m.reason == "delivery_limit" and m.payload == b"poison"
        assert m.origin.queue == topo.work_queue and m.origin.exchange == topo.work_exchange
        assert m.properties["message_id"] == "p-1" and m.properties["delivery_mode"] == 2

    # ---- harvest semantics -------------------------------------------------------------------
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

    def test_wrong_password_is_a_permanent_error(self):
        config = self.config(password="not-the-password")
        health = run(self.adapter_call("health", config=config))
        assert not health.ok and "authentication" in health.error
        with pytest.raises(BrokerError) as err:
            run(
                self.adapter_call(
                    "harvest", SourceSpec(name="x", mode="queue", address="q"), ListSink(), config=config
                )
            )
        assert err.value.permanent

    @pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
    def test_one_adapter_serves_successive_event_loops(self):
        """brokers.run() bridges each sync call through its own event loop: the second call must
        reconnect instead of using a connection bound to the first, finished loop."""
        adapter = get_adapter(self.config())
        assert brokers.run(adapter.health).ok
        assert brokers.run(adapter.health).ok
        brokers.run(adapter.close)
        brokers.run(adapter.close)  # safe twice
        gc.collect()  # reap the first loop's connection here (it could not be closed from the second)

    # ---- redrive -----------------------------------------------------------------------------
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

    # ---- discovery ---------------------------------------------------------------------------
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


class _Connection:
    """``async with`` an aio-pika connection for the tests' own setup and checks."""

    def __init__(self, url: str):
        self.url = url

    async def __aenter__(self):
        self.conn = await aio_pika.connect(self.url, timeout=10)
        return self.conn

    async def __aexit__(self, *exc):
        await self.conn.close()


def test_url_credentials_vhost_and_tls_settings():
    plain = ConnectionConfig(kind="rabbitmq", url="amqp://mq.example:5672/prod")
    assert str(amqp_url(plain)) == "amqp://guest:guest@mq.example:5672/prod"
    secret = ConnectionConfig(kind="rabbitmq", url="amqp://mq.example/", username="a@b", password="p:w/")
    assert amqp_url(secret).user == "a@b" and amqp_url(secret).password == "p:w/"
    tls = ConnectionConfig(
        kind="rabbitmq", url="amqp://mq.example:5672/", tls=TLSOptions(enabled=True, verify=False)
    )
    assert amqp_url(tls).scheme == "amqps" and amqp_url(tls).port == 5671
    assert ssl_context(tls.tls).verify_mode == ssl.CERT_NONE
    assert ssl_context(TLSOptions(enabled=True)).verify_mode == ssl.CERT_REQUIRED
    assert [
        vhost_of(ConnectionConfig(kind="rabbitmq", url=u))
        for u in ("amqp://h/", "amqp://h/%2F", "amqp://h/a%2Fb")
    ] == [
        "/",
        "/",
        "a/b",
    ]
    with pytest.raises(BrokerError) as err:
        amqp_url(ConnectionConfig(kind="rabbitmq", url="http://h/"))
    assert err.value.permanent
