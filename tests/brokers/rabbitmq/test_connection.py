"""RabbitMQ connections: URL, credentials, vhost and TLS settings, a wrong password, and one
adapter used from successive event loops."""

from __future__ import annotations

import asyncio
import gc
import ssl

import aio_pika
import pytest

import brokers
from brokers import get_adapter
from brokers.base import BrokerError, ConnectionConfig, SourceSpec, TLSOptions
from brokers.rabbitmq.connection import amqp_url, broker_error, connect, ssl_context, vhost_of
from tests.brokers.contract import ListSink, run
from tests.brokers.rabbitmq.harness import RabbitMQHarness


class TestRabbitMQConnection(RabbitMQHarness):
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
        """An adapter used on a second event loop (first a loop of its own, then the broker loop
        of brokers.run) reconnects instead of using a connection bound to the first, finished
        loop."""
        adapter = get_adapter(self.config())
        assert asyncio.run(adapter.health()).ok
        assert brokers.run(adapter.health).ok
        brokers.run(adapter.close)
        brokers.run(adapter.close)  # safe twice
        gc.collect()  # reap the first loop's connection here (it could not be closed from the second)

    def test_successive_bridged_calls_share_one_loop_and_one_connection(self):
        """brokers.run() runs every call on the process's one broker loop: an adapter kept
        across calls keeps its connection."""
        adapter = get_adapter(self.config())
        try:
            assert brokers.run(adapter.health).ok
            first = adapter._conn
            assert brokers.run(adapter.health).ok
            assert adapter._conn is first and not first.is_closed
        finally:
            brokers.run(adapter.close)
        assert first.is_closed

    def test_a_connection_that_failed_to_open_is_closed_not_left_to_the_garbage_collector(self, monkeypatch):
        """aio-pika leaves a connection that could not open unclosed: collected later on a
        thread without a loop, it warned "coroutine 'Connection.close' was never awaited"."""
        made, init = [], aio_pika.Connection.__init__

        def remember(conn, *args, **kwargs):  # observes (and keeps alive) each attempt
            init(conn, *args, **kwargs)
            made.append(conn)

        monkeypatch.setattr(aio_pika.Connection, "__init__", remember)
        config = ConnectionConfig(kind="rabbitmq", url="amqp://127.0.0.1:1/", timeout=2)
        with pytest.raises(BrokerError):
            brokers.run(connect, config)
        assert len(made) == 1 and made[0].is_closed

    def test_a_closed_channel_error_reads_as_words_not_an_object_repr(self):
        """During a node shutdown aiormq says "<Channel: "1" at 0x7f..> closed"; the error an
        operator sees names what was closed instead."""

        async def publish_on_a_closed_channel() -> BrokerError:
            conn = await connect(self.config())
            try:
                channel = await conn.channel()
                raw = await channel.get_underlay_channel()
                await channel.close()
                try:
                    await raw.basic_publish(b"x", routing_key="nowhere")
                except Exception as exc:  # noqa: BLE001 - the library's own error is the subject
                    assert " at 0x" in str(exc)  # what aiormq really raises
                    return broker_error(exc, "publish to q")
                raise AssertionError("publishing on a closed channel did not fail")
            finally:
                await conn.close()

        err = run(publish_on_a_closed_channel())
        assert err.message == (
            "publish to q: the broker channel was closed (broker shutting down or connection lost)"
        )
        assert not err.permanent


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
