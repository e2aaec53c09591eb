"""Redrive scale-out with real Celery worker processes and real RabbitMQ: two workers on one job
keep the job's velocity as one limit (not one per worker) and send each message once; a small job
created while a big one occupies every worker still finishes within seconds (jobs take turns).

Deliveries are counted on the destination queue; the rate is read from the queue's depth, sampled
while the job runs.
"""

from __future__ import annotations

import asyncio
import threading
import time

import aio_pika
import pytest
from rest_framework.test import APIClient

from dlqadmin.models import DeadLetter, DeadLetterStatus, RedriveJob, RedriveJobStatus
from dlqadmin.services.redrive.jobs import redrive_job_cancel, redrive_job_create
from dlqadmin.services.tokens import token_create
from tests.support import rabbit
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def fresh(job_id: int) -> RedriveJob:
    return RedriveJob.objects.get(pk=job_id)


class DepthSampler(threading.Thread):
    """Samples (monotonic time, ready messages) of a queue every ``every`` seconds until it holds
    ``target`` messages (or ``timeout`` passed)."""

    def __init__(self, queue: str, target: int, every: float = 0.02, timeout: float = 60):
        super().__init__(daemon=True)
        self.queue, self.target, self.every, self.timeout = queue, target, every, timeout
        self.samples: list[tuple[float, int]] = []

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        conn = await aio_pika.connect(rabbit.AMQP_URL, login="guest", password="guest", timeout=10)
        async with conn:
            channel = await conn.channel()
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                result = (await channel.declare_queue(self.queue, passive=True)).declaration_result
                self.samples.append((time.monotonic(), result.message_count))
                if result.message_count >= self.target:
                    return
                await asyncio.sleep(self.every)

    def first(self, predicate) -> float:
        return next(t for t, n in self.samples if predicate(n))


def test_two_workers_on_one_job_keep_its_velocity_as_one_limit_and_send_each_message_once(
    harvested, workers, settings
):
    """300 messages at 100/s in chunks of 10, two workers, two lanes: 3 s of sending. Were the
    limit per worker, the queue would fill twice as fast."""
    settings.DLQADMIN_REDRIVE_LANES = 2
    count, velocity, batch = 300, 100, 10
    source, top = harvested(count)
    first = workers(DLQADMIN_REDRIVE_LANES="2")
    second = workers(DLQADMIN_REDRIVE_LANES="2")
    first.wait_for_log("ready.", 30)
    second.wait_for_log("ready.", 30)
    sampler = DepthSampler(top.work_queue, count)
    sampler.start()
    job = redrive_job_create(
        ids=list(source.dead_letters.values_list("id", flat=True)), velocity=velocity, batch_size=batch
    )
    assert wait_until(lambda: fresh(job.pk).finished_at is not None, 60, 0.1), fresh(job.pk).status
    sampler.join(30)

    # the first chunk lands at t0, the last one (count - batch) / velocity later
    t_first = sampler.first(lambda n: n > 0)
    t_last = sampler.first(lambda n: n >= count)
    rate = (count - batch) / (t_last - t_first)
    assert abs(rate - velocity) <= 0.1 * velocity, f"{rate:.1f}/s for a limit of {velocity}/s"
    for worker in (first, second):  # both worked the job
        assert "redrive_job_run" in worker.output() and "succeeded" in worker.output(), worker.output()[
            -2000:
        ]

    job = fresh(job.pk)
    assert (job.status, job.total, job.succeeded, job.failed, job.skipped) == (
        RedriveJobStatus.COMPLETED,
        count,
        count,
        0,
        0,
    )
    arrived = sorted(m.body for m in rabbit.drain(top.work_queue))
    assert arrived == sorted(f"msg-{i}".encode() for i in range(count)), f"{len(arrived)} deliveries"
    assert set(DeadLetter.objects.filter(source=source).values_list("status", "redrive_count")) == {
        (DeadLetterStatus.REDRIVEN, 1)
    }


def test_a_small_job_created_while_a_big_one_holds_every_worker_finishes_within_seconds(
    harvested, workers, settings, operator
):
    """A 2 000-message job at 200/s keeps both workers busy (two lanes, 10 s of sending); a
    10-message job posted through the API meanwhile is done within 5 s, and the big job is still
    running then."""
    settings.DLQADMIN_REDRIVE_LANES = 2
    big_source, big_top = harvested(2000)
    small_source, small_top = harvested(10)
    workers(DLQADMIN_REDRIVE_LANES="2").wait_for_log("ready.", 30)
    workers(DLQADMIN_REDRIVE_LANES="2").wait_for_log("ready.", 30)
    big = redrive_job_create(
        ids=list(big_source.dead_letters.values_list("id", flat=True)), velocity=200, batch_size=20
    )
    assert wait_until(lambda: fresh(big.pk).succeeded >= 100, 30, 0.05), fresh(big.pk).status

    _, key = token_create(user=operator, name="fairness")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    posted = time.monotonic()
    created = api.post(
        "/api/v1/redrives/",
        {"ids": list(small_source.dead_letters.values_list("id", flat=True))},
        format="json",
    )
    assert created.status_code == 201, created.content
    small = created.json()["id"]
    assert wait_until(lambda: fresh(small).finished_at is not None, 10, 0.05), fresh(small).status
    took = time.monotonic() - posted
    assert took < 5, f"the 10-message job took {took:.1f}s"
    assert fresh(big.pk).finished_at is None, "the big job ended first; nothing was shared"
    assert (fresh(small).status, fresh(small).succeeded) == (RedriveJobStatus.COMPLETED, 10)
    assert len(rabbit.drain(small_top.work_queue)) == 10

    redrive_job_cancel(job=fresh(big.pk))
    assert wait_until(lambda: fresh(big.pk).finished_at is not None, 30, 0.1)
    big = fresh(big.pk)
    assert big.succeeded + big.skipped == 2000 and big.failed == 0
    assert len(rabbit.drain(big_top.work_queue)) == big.succeeded
