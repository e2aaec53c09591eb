"""Realistic payloads (orders, payments, customers, shipments, garbage) and the error texts
each fake consumer reports. Error texts vary in ids and numbers so they group into a handful of
error groups. Pure Python: no broker client is imported here."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass

# --------------------------------------------------------------------------------------------
# Realistic payloads and failures

_FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory"]
_DOMAINS = ["example.com", "example.org", "mail.example.net", "shop.example"]
_SKUS = ["SKU-1001", "SKU-1002", "SKU-2040", "SKU-3310", "SKU-4096", "SKU-7777"]
_CARRIERS = ["dhl", "ups", "fedex", "postnl", "royalmail"]
_CURRENCIES = ["EUR", "USD", "GBP"]


def _email(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)}.{rng.randint(1, 999)}@{rng.choice(_DOMAINS)}"


def _trace(rng: random.Random) -> str:
    return f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"


def order(rng: random.Random) -> dict:
    lines = [
        {"sku": rng.choice(_SKUS), "qty": rng.randint(1, 4), "unit_price": round(rng.uniform(3, 250), 2)}
        for _ in range(rng.randint(1, 3))
    ]
    return {
        "order_id": rng.randint(10000, 99999),
        "customer": {"id": f"cus_{rng.getrandbits(40):010x}", "email": _email(rng)},
        "lines": lines,
        "total": round(sum(line["qty"] * line["unit_price"] for line in lines), 2),
        "currency": rng.choice(_CURRENCIES),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def payment(rng: random.Random) -> dict:
    return {
        "payment_id": f"pay_{rng.getrandbits(48):012x}",
        "order_id": rng.randint(10000, 99999),
        "amount": round(rng.uniform(5, 900), 2),
        "currency": rng.choice(_CURRENCIES),
        "card": {"brand": rng.choice(["visa", "mastercard", "amex"]), "last4": f"{rng.randint(0, 9999):04d}"},
        "customer_email": _email(rng),
    }


#: the payment event as an Avro producer writes it (bare records, content-type application/avro);
#: seed_demo stores this schema in dlqadmin's schema store for the payments DLT
PAYMENT_AVRO = {
    "type": "record",
    "name": "PaymentRequested",
    "namespace": "com.acme.payments",
    "fields": [
        {"name": "payment_id", "type": "string"},
        {"name": "order_id", "type": "int"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": "string"},
        {
            "name": "card",
            "type": {
                "type": "record",
                "name": "Card",
                "fields": [{"name": "brand", "type": "string"}, {"name": "last4", "type": "string"}],
            },
        },
        {"name": "customer_email", "type": "string"},
    ],
}


def avro_payment(body: dict) -> bytes:
    """``body`` (a ``payment``) as a bare Avro record of ``PAYMENT_AVRO``."""
    import io

    import fastavro

    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(PAYMENT_AVRO), body)
    return out.getvalue()


def customer(rng: random.Random) -> dict:
    return {
        "id": rng.randint(1000, 9999),
        "email": _email(rng),
        "name": rng.choice(_FIRST).title(),
        "country": rng.choice(["NL", "DE", "GB", "US", "FR"]),
        "marketing_opt_in": rng.random() < 0.4,
    }


def shipment(rng: random.Random) -> dict:
    return {
        "shipment_id": f"shp_{rng.getrandbits(40):010x}",
        "order_id": rng.randint(10000, 99999),
        "carrier": rng.choice(_CARRIERS),
        "weight_kg": round(rng.uniform(0.2, 40), 1),
        "address": {"postcode": f"{rng.randint(10000, 99999)}", "country": rng.choice(["NL", "DE", "US"])},
    }


def garbage(rng: random.Random) -> bytes:
    """What real queues also carry: truncated JSON, XML from a legacy producer, binary blobs."""
    oid = rng.randint(10000, 99999)
    return rng.choice(
        [
            f'{{"order_id": {oid}, "total": '.encode(),
            f'<order id="{oid}"><total>12.50</total></order>'.encode(),
            b"\x08\x96\x01\x12\x07" + rng.randbytes(24),  # protobuf where JSON was expected
            b"\x1f\x8b\x08\x00" + rng.randbytes(32),  # gzip someone forgot to declare
        ]
    )


def _json_error_position(body: bytes) -> int:
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return getattr(exc, "pos", None) or getattr(exc, "start", 0)
    return 0


def _stack(fqcn: str, message: str, frames: list[str], wrapper: str = "") -> str:
    lines = [f"{fqcn}: {message}"] + [f"\tat {frame}" for frame in frames]
    if wrapper:
        lines = [f"{wrapper}: Listener threw exception", "\tat " + frames[-1], "Caused by: " + lines[0]]
        lines += [f"\tat {frame}" for frame in frames]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Failure:
    fqcn: str
    message: str


def _order_failure(rng: random.Random, body: dict | None, raw: bytes) -> Failure:
    if body is None:
        return Failure(
            "com.fasterxml.jackson.core.JsonParseException",
            f"JSON parse error at position {_json_error_position(raw)}",
        )
    oid = body.get("order_id", 0)
    return rng.choice(
        [
            Failure("com.acme.orders.OrderNotFoundException", f"Order {oid} not found"),
            Failure(
                "java.util.concurrent.TimeoutException",
                f"Timeout after {rng.choice([3000, 5000])}ms calling inventory-service",
            ),
            Failure(
                "com.acme.orders.InsufficientStockException",
                f"Insufficient stock for {rng.choice(_SKUS)}: requested {rng.randint(2, 9)}, "
                f"available {rng.randint(0, 1)}",
            ),
        ]
    )


# --------------------------------------------------------------------------------------------
# Kafka failures (Spring Kafka listener, Kafka Connect sink)


def _payment_failure(rng: random.Random, body: dict | None, raw: bytes) -> tuple[str, Failure | None]:
    """(exception fqcn, root cause) as Spring Kafka's error handler would report them."""
    if body is None:
        return (
            "org.springframework.kafka.support.serializer.DeserializationException",
            Failure(
                "com.fasterxml.jackson.core.JsonParseException",
                f"JSON parse error at position {_json_error_position(raw)}",
            ),
        )
    cause = rng.choice(
        [
            Failure(
                "com.acme.payments.PaymentDeclinedException",
                f"Payment declined: card ending {body['card']['last4']}",
            ),
            Failure(
                "java.util.concurrent.TimeoutException",
                f"Timeout after {rng.choice([2000, 3000])}ms calling fraud-service",
            ),
            Failure(
                "org.springframework.dao.DuplicateKeyException",
                f"Duplicate payment {body['payment_id']} for order {body['order_id']}",
            ),
        ]
    )
    return "org.springframework.kafka.listener.ListenerExecutionFailedException", cause


def _connect_failure(rng: random.Random, body: dict | None) -> dict[str, str]:
    if body is None:
        return {
            "stage": "VALUE_CONVERTER",
            "class.name": "org.apache.kafka.connect.json.JsonConverter",
            "exception.class.name": "org.apache.kafka.connect.errors.DataException",
            "exception.message": (
                "Converting byte[] to Kafka Connect data failed due to serialization error: "
            ),
        }
    if rng.random() < 0.5:
        return {
            "stage": "TASK_PUT",
            "class.name": "io.confluent.connect.jdbc.sink.JdbcSinkTask",
            "exception.class.name": "org.apache.kafka.connect.errors.ConnectException",
            "exception.message": (
                f"java.sql.BatchUpdateException: Batch entry {rng.randint(0, 49)} INSERT INTO "
                '"customers" was aborted: ERROR: duplicate key value violates unique constraint '
                f'"customers_email_key" Detail: Key (email)=({body["email"]}) already exists.'
            ),
        }
    return {
        "stage": "TRANSFORMATION",
        "class.name": "org.apache.kafka.connect.transforms.Cast$Value",
        "exception.class.name": "org.apache.kafka.connect.errors.DataException",
        "exception.message": f"Cannot cast field 'id' value {body['id']}x to INT32",
    }


# --------------------------------------------------------------------------------------------
# NATS failures (the reason in +TERM)


def _term_reason(rng: random.Random, data: bytes) -> str:
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return f"JSON parse error at position {_json_error_position(data)}"
    return rng.choice(
        [
            f"Shipment {body['order_id']} not found",
            f"Address validation failed for postcode {body['address']['postcode']}",
            f"Carrier '{body['carrier']}' rejected label: weight {body['weight_kg']}kg is over the limit",
        ]
    )
