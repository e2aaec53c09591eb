"""The job-wide velocity schedule (services/redrive/velocity.py) against the real Redis, and its
fallbacks when Redis is absent or unreachable."""

from __future__ import annotations

import concurrent.futures

import pytest

from dlqadmin.services.redrive import velocity

JOB = 987_654


@pytest.fixture
def schedule(settings):
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(velocity.key(JOB))
    velocity.forget(JOB)
    yield client
    client.delete(velocity.key(JOB))
    velocity.forget(JOB)


def test_every_reservation_of_a_job_starts_one_chunk_later_whoever_asks(schedule):
    """Eight workers reserve chunks of 10 at 100/s at the same moment: one schedule, 0.1 s apart."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: velocity.reserve(job_id=JOB, count=10, velocity=100), range(8)))
    assert all(ok for ok, _ in answers)
    waits = sorted(wait for _, wait in answers)
    for i, wait in enumerate(waits):
        assert i * 0.1 - 0.05 <= wait <= i * 0.1 + 0.05, waits
    assert schedule.ttl(velocity.key(JOB)) > 0  # the key goes away by itself


def test_a_start_beyond_max_wait_is_refused_and_reserves_nothing(schedule):
    assert velocity.reserve(job_id=JOB, count=100, velocity=100)[0]  # the next start is 1 s away
    ok, wait = velocity.reserve(job_id=JOB, count=100, velocity=100, max_wait=0.5)
    assert not ok and 0.8 < wait <= 1.0
    ok, again = velocity.reserve(job_id=JOB, count=100, velocity=100, max_wait=5)
    assert ok and 0.8 < again <= 1.0  # the refusal did not move the schedule


def test_schedules_are_per_database_so_installations_sharing_redis_never_share_one(settings):
    assert velocity.key(JOB) == f"dlqadmin:velocity:{settings.DATABASES['default']['NAME']}:{JOB}"


def test_without_redis_one_process_keeps_the_schedule(settings, schedule):
    settings.REDIS_URL = ""
    settings.CELERY_BROKER_URL = "memory://"
    waits = [velocity.reserve(job_id=JOB, count=10, velocity=100)[1] for _ in range(3)]
    assert waits[0] == 0 and 0.15 <= waits[2] <= 0.2
    assert not schedule.exists(velocity.key(JOB))


def test_with_redis_unreachable_each_process_paces_at_velocity_over_lanes(settings, schedule):
    """The job may run slower than asked, never faster: two lanes each get half the velocity."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    velocity._script = None
    try:
        assert velocity.reserve(job_id=JOB, count=10, velocity=100, lanes=2) == (True, 0.0)
        ok, wait = velocity.reserve(job_id=JOB, count=10, velocity=100, lanes=2)
        assert ok and 0.15 <= wait <= 0.2  # 10 messages at 50/s
    finally:
        velocity._script = None
