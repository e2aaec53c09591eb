"""`make demo` with automatic retry on ``orders-dlq``: every retry is delivered, including the
dead letters the demo's consumer republishes like Spring AMQP's ``RepublishMessageRecoverer``
(original exchange and routing key, no queue), which used to fail with "no destination"."""

from __future__ import annotations

import asyncio
import io
import time

import pytest
from django.core.management import call_command

from brokers import simulate
from dlqadmin.models import DeadLetter, RedriveJob, Source
from dlqadmin.services.maintenance import auto_retry_run
from dlqadmin.services.sources import source_update
from tests.conftest import AMQP_URL
from tests.support.jobs import run_to_end
from tests.test_demo import _delete_rabbitmq, unique_prefix

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def prefix():
    prefix = unique_prefix("retry")
    yield prefix
    asyncio.run(_delete_rabbitmq(prefix))


def test_the_demo_auto_retry_delivers_every_dead_letter_of_orders_dlq(prefix):
    call_command("seed_demo", rabbitmq_url=AMQP_URL, prefix=prefix, stdout=io.StringIO())
    source = Source.objects.get(name="orders-dlq")
    source_update(source=source, auto_retry=True, auto_retry_backoff_seconds=0)
    caused = asyncio.run(simulate.rabbitmq_traffic(AMQP_URL, prefix=prefix, rate=50.0, count=10, seed=3))
    assert caused["recovered"] >= 1 and caused["rejected"] >= 1, caused

    deadline = time.monotonic() + 30
    while DeadLetter.objects.filter(source=source).count() < sum(caused.values()):
        assert time.monotonic() < deadline, "the demo's dead letters were not all harvested"
        call_command("harvest", "--source", "orders-dlq", stdout=io.StringIO())
    recovered = DeadLetter.objects.filter(source=source, origin_queue="")
    assert recovered.count() == caused["recovered"]
    n = simulate.rabbitmq_names(prefix)
    assert {(d.origin_exchange, d.origin_routing_key[:6]) for d in recovered} == {(n.exchange, "order.")}

    jobs = [run_to_end(RedriveJob.objects.get(pk=pk)) for pk in auto_retry_run()]
    assert sum(job.total for job in jobs) == sum(caused.values())
    assert sum(job.failed for job in jobs) == 0, list(
        RedriveJob.objects.filter(attempts__status="failed").values_list("attempts__error", flat=True)
    )
    assert sum(job.succeeded for job in jobs) == sum(caused.values())
    destinations = set(recovered.values_list("redrive_attempts__destination", flat=True))
    assert all(d.startswith(f"exchange={n.exchange!r} routing_key='order.") for d in destinations), (
        destinations
    )
