"""The dead letters every measurement uses: ~1 KiB JSON orders and realistic failures."""

from __future__ import annotations

import random

PAYLOAD_BYTES = 1024
TENANTS = 40

#: (exception class, message template); ``{n}`` / ``{m}`` are filled per message.
FAILURES = [
    ("com.acme.orders.OrderNotFoundException", "Order ord-{n:08d} not found in warehouse {m}"),
    ("java.net.SocketTimeoutException", "Read timed out after {m} ms calling payments-service"),
    ("com.acme.payments.InsufficientFundsException", "Insufficient funds on account acct-{m:06d}"),
    ("com.fasterxml.jackson.core.JsonParseException", "Unexpected character at line {m} column {n}"),
    ("org.postgresql.util.PSQLException", 'duplicate key value violates unique constraint "orders_pkey"'),
    ("java.lang.IllegalStateException", "Inventory reservation {n} expired before confirmation"),
    ("java.lang.NullPointerException", "Cannot invoke Customer.getAddress() because customer is null"),
    ("com.acme.tax.TaxServiceException", "Tax service returned HTTP 503 for region r-{m}"),
    ("org.apache.kafka.connect.errors.DataException", "Converting byte[] to Kafka Connect data failed"),
    ("com.acme.shipping.AddressValidationException", "Postcode {m} is not valid for country DE"),
    ("java.util.concurrent.RejectedExecutionException", "Task rejected: pool saturated ({m} queued)"),
    ("com.acme.fraud.FraudCheckException", "Fraud score {m} above threshold for order ord-{n:08d}"),
]
#: a phrase common to one failure kind (the "common" free-text search)
COMMON_PHRASE = "payments-service"
_FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "


def order_id(n: int) -> str:
    return f"ord-{n:08d}"


def payload(n: int, size: int = PAYLOAD_BYTES) -> bytes:
    """A JSON order of exactly ``size`` bytes (at least the fixed part), unique per ``n``."""
    head = (
        f'{{"order_id":"{order_id(n)}","customer":"cust-{n % 9973:05d}","tenant":"{tenant(n)}",'
        f'"amount":{(n * 37) % 100000 / 100:.2f},"currency":"EUR","items":['
        f'{{"sku":"sku-{n % 811:04d}","qty":{n % 5 + 1}}},{{"sku":"sku-{n % 613:04d}","qty":1}}],'
        '"note":"'
    )
    room = max(0, size - len(head) - 2)
    start = n % len(_FILLER)
    note = (_FILLER * (room // len(_FILLER) + 2))[start : start + room]
    return (head + note + '"}').encode()


def tenant(n: int) -> str:
    return f"tenant-{n % TENANTS:02d}"


def failure_kind(rng: random.Random) -> int:
    """An index into FAILURES: a skewed mix, as real DLQs are (a few kinds dominate)."""
    return min(int(rng.expovariate(0.35)), len(FAILURES) - 1)


def failure(n: int, rng: random.Random | None = None, kind: int | None = None) -> tuple[str, str]:
    """(exception class, message) for message ``n``."""
    rng = rng or random.Random(n)
    error_class, template = FAILURES[failure_kind(rng) if kind is None else kind]
    return error_class, template.format(n=n, m=rng.randrange(1, 100_000))
