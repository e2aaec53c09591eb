"""The peer pipeline (issue 15): what a team without dlqadmin would write in an afternoon, run on
the same dead letters as dlqadmin's harvest and redrive, in the same run, so dlqadmin / peer is a
ratio measured side by side.

Harvest: the plain client (aio-pika, confluent-kafka, nats-py) reads the DLQ in batches of
``BENCH_PEER_BATCH``; each batch is COPYed into a minimal table (``(source_id, position)``
unique, payload ``bytea``, headers ``jsonb``, the Kafka key, status ``text``), committed, then
acknowledged on the broker (one ``multiple`` ack / one synchronous offset commit / an ack per
JetStream message). Redrive: the ids are selected once, then per batch the rows are read,
published to their original queue / topic / subject with confirms (publisher confirms,
``acks=all`` delivery reports, PubAcks), and one statement writes the batch's status into a
narrow status table (an upsert: ``INSERT ... ON CONFLICT DO UPDATE``, the row is made on the
first redrive), committed. Sequential code: nothing is read while a batch is being stored. Each
pass opens its own client connections (as a script run on demand would); the time includes that.

The tables live in the bench database next to dlqadmin's; before the brokers run they are filled
with ``BENCH_TABLE_ROWS`` rows of ~1 KiB (server side, ``generate_series``), as dlqadmin's table
is, so both pay index upkeep on a table of the same size. They are dropped at the end."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import time

import aio_pika
import nats
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from nats.js.api import AckPolicy, ConsumerConfig

MESSAGES = "bench_peer_message"
STATUS = "bench_peer_status"
SOURCE_IDS = {"rabbitmq": 1, "kafka": 2, "nats": 3}
FILL_SOURCES = 12  # the prefilled rows are spread over sources that no pipeline reads
TIMEOUT = 600.0  # seconds for one pass; a pass that stalls (a lost confirm) fails the run
#: headers the broker (or the dead-lettering code) added; not sent again on redrive
DEATH_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "kafka_dlt-", "x-original-", "x-exception-")
DEATH_HEADERS += ("x-failed-at",)

DDL = f"""
CREATE TABLE {MESSAGES} (
    id bigserial PRIMARY KEY,
    source_id integer NOT NULL,
    position text NOT NULL,
    payload bytea NOT NULL,
    headers jsonb NOT NULL,
    key bytea,
    status text NOT NULL DEFAULT 'new'
);
CREATE TABLE {STATUS} (
    message_id bigint PRIMARY KEY,
    status text NOT NULL,
    redriven_at timestamptz
)"""
FILL = f"""
INSERT INTO {MESSAGES} (source_id, position, payload, headers, status)
SELECT 100 + g %% {FILL_SOURCES}, 'fill/' || g,
       convert_to(rpad(md5(g::text), 1024, ' lorem ipsum dolor sit amet'), 'UTF8'),
       jsonb_build_object('tenant', 'tenant-' || g %% 40, 'x-request-id', 'req-' || g),
       'new'
FROM generate_series(1, %s) AS g"""
UNIQUE = f"ALTER TABLE {MESSAGES} ADD CONSTRAINT {MESSAGES}_position UNIQUE (source_id, position)"
COPY = f"COPY {MESSAGES} (source_id, position, payload, headers, key, status) FROM STDIN"
ROWS = f"SELECT id, payload, headers, key FROM {MESSAGES} WHERE id = ANY(%s) ORDER BY id"
MARK = f"""
INSERT INTO {STATUS} (message_id, status, redriven_at)
SELECT id, 'redriven', now() FROM unnest(%s::bigint[]) AS id
ON CONFLICT (message_id) DO UPDATE SET status = excluded.status, redriven_at = excluded.redriven_at"""


# ---- the tables ---------------------------------------------------------------------------------
def create(url: str, fill: int) -> float:
    """Create the peer tables and prefill ``fill`` rows; returns the seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(DDL)
        if fill:
            pg.execute(FILL, [fill])
        pg.execute(UNIQUE)
        pg.execute(f"VACUUM ANALYZE {MESSAGES}")
    return time.perf_counter() - started


def drop(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(f"DROP TABLE IF EXISTS {MESSAGES}, {STATUS}")


def stored(url: str, kind: str) -> int:
    with psycopg.connect(url) as pg:
        query = f"SELECT count(*) FROM {MESSAGES} WHERE source_id = %s"
        return pg.execute(query, [SOURCE_IDS[kind]]).fetchone()[0]


def _store(pg: psycopg.Connection, source_id: int, rows: list[tuple]) -> None:
    """COPY one batch of (position, payload, headers, key) and commit."""
    with pg.cursor() as cursor, cursor.copy(COPY) as copy:
        for position, payload, headers, key in rows:
            copy.write_row((source_id, position, payload, json.dumps(headers, default=str), key, "new"))
    pg.commit()


def _ids(pg: psycopg.Connection, source_id: int) -> list[int]:
    query = f"SELECT id FROM {MESSAGES} WHERE source_id = %s ORDER BY id"
    ids = [pk for (pk,) in pg.execute(query, [source_id]).fetchall()]
    pg.commit()
    return ids


def _batches(pg: psycopg.Connection, ids: list[int], size: int):
    """Each batch's rows (id, payload, headers, key), read just before it is published."""
    for start in range(0, len(ids), size):
        yield pg.execute(ROWS, [ids[start : start + size]]).fetchall()


def _mark(pg: psycopg.Connection, rows: list[tuple]) -> None:
    pg.execute(MARK, [[row[0] for row in rows]])
    pg.commit()


def _resend(headers: dict) -> dict:
    return {k: v for k, v in headers.items() if not k.startswith(DEATH_HEADERS)}


# ---- RabbitMQ (aio-pika) ------------------------------------------------------------------------
def _rabbit_row(message: aio_pika.abc.AbstractIncomingMessage) -> tuple:
    position = message.message_id or hashlib.sha256(message.body).hexdigest()
    return position, message.body, dict(message.headers or {}), None


async def _rabbit_connect(bench) -> aio_pika.abc.AbstractConnection:
    return await aio_pika.connect(bench.config.amqp_url, login="guest", password="guest")


async def _rabbit_harvest(bench, pg: psycopg.Connection, count: int, batch: int) -> None:
    async with await _rabbit_connect(bench) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=batch)
        queue = await channel.get_queue(bench.dlq)
        pending, done = [], 0
        async with queue.iterator() as messages:
            async for message in messages:
                pending.append(message)
                if len(pending) == batch or done + len(pending) == count:
                    _store(pg, SOURCE_IDS["rabbitmq"], [_rabbit_row(m) for m in pending])
                    await pending[-1].ack(multiple=True)
                    done, pending = done + len(pending), []
                    if done >= count:
                        break


def _rabbit_target(headers: dict) -> tuple[str, str]:
    """(exchange, routing key) the message died from, read from its ``x-death``."""
    death = (headers.get("x-death") or [{}])[0]
    keys = death.get("routing-keys") or [""]
    return death.get("exchange", ""), keys[0]


async def _rabbit_redrive(bench, pg: psycopg.Connection, batch: int) -> None:
    async with await _rabbit_connect(bench) as connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        for rows in _batches(pg, _ids(pg, SOURCE_IDS["rabbitmq"]), batch):
            sends = []
            for _, payload, headers, _ in rows:
                name, routing_key = _rabbit_target(headers)
                if name not in exchanges:
                    exchanges[name] = await channel.get_exchange(name) if name else channel.default_exchange
                message = aio_pika.Message(
                    payload, headers=_resend(headers), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                )
                sends.append(exchanges[name].publish(message, routing_key=routing_key, mandatory=True))
            await asyncio.gather(*sends)  # every publish confirmed
            _mark(pg, rows)


# ---- Kafka (confluent-kafka) --------------------------------------------------------------------
def _kafka_headers(message) -> dict:
    """Header values as text; binary ones (``kafka_dlt-original-offset`` & co: NUL bytes, which
    jsonb refuses) as ``base64:...``."""
    out = {}
    for k, v in message.headers() or []:
        text = v.decode("utf-8", "backslashreplace") if v is not None else None
        out[k] = f"base64:{base64.b64encode(v).decode()}" if text and "\x00" in text else text
    return out


def _kafka_value(text: str) -> bytes:
    return base64.b64decode(text[7:]) if text.startswith("base64:") else text.encode()


def _kafka_harvest(bench, pg: psycopg.Connection, count: int, batch: int) -> None:
    from .broker_kafka import PARTITIONS

    consumer = Consumer(
        {
            "bootstrap.servers": bench.config.kafka_bootstrap,
            "group.id": f"{bench.group}.peer",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(bench.dlt, p) for p in range(PARTITIONS)])
    done, deadline = 0, time.monotonic() + TIMEOUT
    try:
        while done < count and time.monotonic() < deadline:
            messages = [m for m in consumer.consume(batch, 0.5) if m.error() is None]
            if not messages:
                continue
            rows = [
                (f"{m.topic()}/{m.partition()}/{m.offset()}", m.value(), _kafka_headers(m), m.key())
                for m in messages
            ]
            _store(pg, SOURCE_IDS["kafka"], rows)
            offsets = {m.partition(): m.offset() + 1 for m in messages}
            consumer.commit(
                offsets=[TopicPartition(bench.dlt, p, o) for p, o in offsets.items()], asynchronous=False
            )
            done += len(messages)
    finally:
        consumer.close()


def _kafka_redrive(bench, pg: psycopg.Connection, batch: int) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bench.config.kafka_bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    failed: list = []
    for rows in _batches(pg, _ids(pg, SOURCE_IDS["kafka"]), batch):
        for _, payload, headers, key in rows:
            topic = headers["kafka_dlt-original-topic"]
            resent = [(k, _kafka_value(v)) for k, v in _resend(headers).items() if v is not None]
            producer.produce(
                topic,
                value=payload,
                key=key,
                headers=resent,
                on_delivery=lambda e, _m: e and failed.append(e),
            )
        if producer.flush(60) or failed:  # every delivery report in
            raise RuntimeError(f"peer Kafka redrive: {failed[:3]}")
        _mark(pg, rows)


# ---- NATS JetStream (nats-py) -------------------------------------------------------------------
async def _nats_harvest(bench, pg: psycopg.Connection, count: int, batch: int) -> None:
    async with await nats.connect(bench.config.nats_url) as nc:
        js = nc.jetstream(timeout=10)
        config = ConsumerConfig(durable_name="bench-peer", ack_policy=AckPolicy.EXPLICIT, ack_wait=60)
        await js.add_consumer(bench.dlq_stream, config)
        sub = await js.pull_subscribe_bind(config.durable_name, stream=bench.dlq_stream)
        done, deadline = 0, time.monotonic() + TIMEOUT
        while done < count and time.monotonic() < deadline:
            with contextlib.suppress(nats.errors.TimeoutError):
                messages = await sub.fetch(min(batch, count - done), timeout=2)
                rows = [
                    (f"{bench.dlq_stream}:{m.metadata.sequence.stream}", m.data, dict(m.headers or {}), None)
                    for m in messages
                ]
                _store(pg, SOURCE_IDS["nats"], rows)
                for message in messages:
                    await message.ack()
                done += len(messages)
        await nc.flush()  # the acks are out


async def _nats_redrive(bench, pg: psycopg.Connection, batch: int) -> None:
    async with await nats.connect(bench.config.nats_url) as nc:
        js = nc.jetstream(timeout=10)
        for rows in _batches(pg, _ids(pg, SOURCE_IDS["nats"]), batch):
            futures = [
                await js.publish_async(headers["x-original-subject"], payload, headers=_resend(headers))
                for _, payload, headers, _ in rows
            ]
            await asyncio.gather(*futures)  # every PubAck in
            _mark(pg, rows)


# ---- what throughput.py calls -------------------------------------------------------------------
def harvest(bench, url: str, count: int, batch: int, loop) -> float:
    """Seconds for the peer to move ``count`` dead letters of ``bench``'s DLQ into its table."""
    with psycopg.connect(url) as pg:
        started = time.perf_counter()
        if bench.kind == "rabbitmq":
            loop.run(asyncio.wait_for(_rabbit_harvest(bench, pg, count, batch), TIMEOUT))
        elif bench.kind == "kafka":
            _kafka_harvest(bench, pg, count, batch)
        else:
            loop.run(asyncio.wait_for(_nats_harvest(bench, pg, count, batch), TIMEOUT))
        return time.perf_counter() - started


def redrive(bench, url: str, batch: int, loop) -> float:
    """Seconds for the peer to publish every row it harvested from ``bench`` back to its origin."""
    with psycopg.connect(url) as pg:
        started = time.perf_counter()
        if bench.kind == "rabbitmq":
            loop.run(asyncio.wait_for(_rabbit_redrive(bench, pg, batch), TIMEOUT))
        elif bench.kind == "kafka":
            _kafka_redrive(bench, pg, batch)
        else:
            loop.run(asyncio.wait_for(_nats_redrive(bench, pg, batch), TIMEOUT))
        return time.perf_counter() - started
