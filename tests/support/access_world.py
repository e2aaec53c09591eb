"""A small world for access-control tests: one open source with a message full of sensitive
values (masked for viewers), one source restricted to the ``payroll`` group, and the masking
rules that hide those values. Stored through the real harvest sink; no broker is contacted."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import Group
from django.utils import timezone

from brokers import headers as header_codec
from brokers.base import HarvestedMessage, Origin
from dlqadmin.models import DeadLetter, MaskingRule, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import dead_letters_store
from dlqadmin.services.search import search_index_backlog

EMAIL, CARD, TOKEN = "ann@example.com", "4111111111111111", "tok-SECRET-123"
#: what a masked user must never receive, anywhere
SECRETS = (EMAIL, CARD, TOKEN)
PAYLOAD = json.dumps({"order": 7, "customer": {"email": EMAIL, "name": "Ann"}, "note": f"card {CARD}"})
ERROR = f"charge failed for {EMAIL} with card {CARD}"


@dataclass
class World:
    source: Source  # everyone may see it
    secret: Source  # restricted to the payroll group
    letter: DeadLetter  # in ``source``: payload, headers and error full of SECRETS
    hidden: DeadLetter  # in ``secret``
    payroll: Group


def message(
    *,
    payload: bytes,
    headers: dict,
    error: str,
    error_class: str,
    key: bytes | None = None,
    properties: dict | None = None,
) -> HarvestedMessage:
    return HarvestedMessage(
        position=f"pos-{uuid.uuid4().hex[:12]}",
        payload=payload,
        key=key,
        headers=header_codec.encode_mapping(headers),
        properties={"content_type": "application/json", **(properties or {})},
        origin=Origin(queue="orders.q", exchange="orders", routing_key="order.created"),
        reason="rejected",
        error_class=error_class,
        error_message=error,
        stacktrace=f"{error_class}: {error}\n  at charge (billing.py:42)",
        failed_at=timezone.now() - timedelta(minutes=5),
    )


def build() -> World:
    suffix = uuid.uuid4().hex[:6]
    connection = connection_create(
        name=f"rabbit-{suffix}", kind="rabbitmq", url="amqp://127.0.0.1:5672/", password="pw"
    )
    source = Source.objects.create(
        connection=connection, name=f"orders-{suffix}", mode="queue", address=f"orders.dlq.{suffix}"
    )
    secret = Source.objects.create(
        connection=connection, name=f"payroll-{suffix}", mode="queue", address=f"payroll.dlq.{suffix}"
    )
    payroll, _ = Group.objects.get_or_create(name=f"payroll-{suffix}")
    secret.allowed_groups.add(payroll)
    MaskingRule.objects.create(name=f"email-{suffix}", kind="json_path", pattern="customer.email")
    MaskingRule.objects.create(name=f"auth-{suffix}", kind="header", pattern="Authorization")
    MaskingRule.objects.create(
        name=f"emails-{suffix}", kind="regex", pattern=r"[\w.+-]+@[\w-]+(\.[\w-]+)+", replacement="<email>"
    )
    MaskingRule.objects.create(
        name=f"cards-{suffix}", kind="regex", pattern=r"\b\d{16}\b", replacement="[card]"
    )
    letter = _store(
        source,
        message(
            payload=PAYLOAD.encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "tenant": "acme"},
            error=ERROR,
            error_class="PaymentDeclined",
            # the record key and broker properties carry secrets too (masked by the same rules)
            key=f"customer:{EMAIL}".encode(),
            properties={"user_id": EMAIL, "correlation_id": f"card {CARD}", "authorization": TOKEN},
        ),
    )
    hidden = _store(
        secret,
        message(
            payload=b'{"salary": 5555}',
            headers={"tenant": "hr"},
            error="payroll run 9 failed",
            error_class="PayrollError",
        ),
    )
    return World(source=source, secret=secret, letter=letter, hidden=hidden, payroll=payroll)


def _store(source: Source, item: HarvestedMessage) -> DeadLetter:
    result = dead_letters_store(source=source, batch=[item])
    search_index_backlog()  # what the harvester's indexer does a moment later
    return DeadLetter.objects.select_related("source").get(pk=result.inserted_ids[0])


def assert_no_secrets(text: str | bytes) -> None:
    raw = text if isinstance(text, str) else text.decode("utf-8", "replace")
    leaked = [s for s in SECRETS if s in raw]
    assert not leaked, f"masked values leaked: {leaked}"
