"""Django settings for every process of a bench run: dlqadmin's own, plus isolation from other
runs sharing the same Redis (cache keys and channel-layer groups get a per-run prefix) and the
in-process test client's host name. API throttling stays on, with a rate the latency samples
cannot reach (its cache round trip is still part of the measured server time)."""

import os

from dlqadmin.settings import *  # noqa: F403
from dlqadmin.settings import ALLOWED_HOSTS, REST_FRAMEWORK

_RUN = os.environ.get("BENCH_RUN_ID", str(os.getpid()))

ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"dlq-user": "1000000/min", "dlq-anon": "1000000/min"},
}
for _cache in globals().get("CACHES", {}).values():
    if "redis" in _cache.get("BACKEND", "").lower():
        _cache["KEY_PREFIX"] = f"dlqadmin-bench-{_RUN}"
for _layer in globals().get("CHANNEL_LAYERS", {}).values():
    if "redis" in _layer.get("BACKEND", "").lower():
        _layer.setdefault("CONFIG", {})["prefix"] = f"asgi-bench-{_RUN}"
