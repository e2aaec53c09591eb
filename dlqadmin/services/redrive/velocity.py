"""A redrive job's velocity as one limit for the whole job, however many workers send it.

Every chunk reserves its start before it publishes: :func:`reserve` keeps, per job, the
earliest time the next message may go (GCRA's "theoretical arrival time"); a chunk of ``n``
messages starts at that time (at once if it has passed) and moves it ``n / velocity`` seconds on.
Workers on several machines therefore share one schedule: two workers at 2,000/s send 2,000/s
together, not 4,000. A slot nobody took in time can be made up for one chunk's time (the GCRA
burst tolerance: a chunk that started late does not lower the job's rate; the job's first chunk
gets none); idle time beyond that is never saved up.

* **With Redis** (``REDIS_URL``) the schedule is one key per job (``dlqadmin:velocity:<database>:<job>``),
  moved by a Lua script on Redis's own clock (one round trip, atomic, the same clock for every
  host). The key expires soon after the job stops sending.
* **Without Redis** Celery runs on its in-process ``memory://`` transport, so one process does
  all the work and a schedule in this process is the job's. With another Celery broker but no
  Redis, or Redis configured but unreachable, each process keeps its own schedule at
  ``velocity / lanes`` (the lanes a job runs in, :func:`dlqadmin.services.redrive.worker.lanes_for`):
  the job may then run slower than asked, never faster.

A worker asks with ``max_wait`` (what is left of its time slice): a start further away is not
reserved (``None``), so the worker hands its slot back to the queue and comes back later instead
of sleeping on a Celery worker another job could use.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

log = logging.getLogger("dlqadmin.services.redrive_worker")

#: seconds a job's schedule outlives its last reservation in Redis
KEY_TTL = 600

_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = now
if tat > 0 then
  start = math.max(tat, now - tonumber(ARGV[1]) / tonumber(ARGV[2]))
end
local wait = math.max(0, start - now)
if wait > tonumber(ARGV[3]) then
  return {0, tostring(wait)}
end
redis.call('SET', KEYS[1], tostring(start + tonumber(ARGV[1]) / tonumber(ARGV[2])), 'EX', ARGV[4])
return {1, tostring(wait)}
"""

_lock = threading.Lock()
_local: dict[int, float] = {}
_client = None
_script = None
_warned_at = 0.0


def key(job_id: int) -> str:
    """The Redis key of a job's schedule, named by database too: installations (or test runs)
    sharing one Redis never share a schedule."""
    return f"dlqadmin:velocity:{settings.DATABASES['default']['NAME']}:{job_id}"


def _redis_script():
    global _client, _script
    if _script is None:
        import redis

        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        _script = _client.register_script(_SCRIPT)
    return _script


def _reserve_local(job_id: int, count: int, velocity: float, max_wait: float) -> tuple[bool, float]:
    with _lock:
        now = time.monotonic()
        tat = _local.get(job_id)
        start = now if tat is None else max(tat, now - count / velocity)
        wait = max(0.0, start - now)
        if wait > max_wait:
            return False, wait
        _local[job_id] = start + count / velocity
        return True, wait


def reserve(*, job_id: int, count: int, velocity: float, lanes: int = 1, max_wait: float = float("inf")):
    """Reserve the start of ``count`` messages of job ``job_id`` at ``velocity`` messages/s for
    the whole job. Returns ``(True, seconds to wait before starting)`` or, when the start would
    be more than ``max_wait`` seconds away, ``(False, seconds until it could start)`` and nothing
    is reserved."""
    global _warned_at
    if not settings.REDIS_URL:
        one_process = str(settings.CELERY_BROKER_URL).startswith("memory://")
        return _reserve_local(job_id, count, velocity if one_process else velocity / max(1, lanes), max_wait)
    import redis

    try:
        limit = min(max_wait, 10.0 * KEY_TTL)  # Lua numbers: no infinity through ARGV
        ok, wait = _redis_script()(keys=[key(job_id)], args=[count, velocity, repr(limit), KEY_TTL])
        return bool(ok), float(wait)
    except redis.RedisError as exc:
        if time.monotonic() - _warned_at > 60:
            _warned_at = time.monotonic()
            log.warning(
                "redrive job %s: Redis unreachable (%s); pacing per process at velocity / %d",
                job_id,
                exc,
                lanes,
            )
        return _reserve_local(job_id, count, velocity / max(1, lanes), max_wait)


def forget(job_id: int) -> None:
    """The job ended: drop its schedule (tests; Redis keys also expire by themselves)."""
    with _lock:
        _local.pop(job_id, None)
