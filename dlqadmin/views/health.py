"""Health endpoints for orchestrators and monitoring: /healthz, /readyz, /metrics."""

from __future__ import annotations

import hmac
import logging
import time

from django.conf import settings
from django.db import connection as db_connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from dlqadmin.metrics import DlqadminCollector
from dlqadmin.proxies import client_ip, in_networks

#: a load balancer polling many web processes costs at most one query and one PING per process
#: this often
READY_CACHE_SECONDS = 2.0
_ready_cache: dict[str, tuple[float, dict, int]] = {}

log = logging.getLogger(__name__)


@require_GET
@never_cache
def healthz(request):
    """Liveness: the process is up and serving requests."""
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        log.warning("readyz: the database does not answer", exc_info=True)
        return False
    return True


def _redis_ok() -> bool:
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
    except Exception:  # noqa: BLE001
        log.warning("readyz: Redis does not answer", exc_info=True)
        return False
    return True


@require_GET
@never_cache
def readyz(request):
    """Readiness for a load balancer: the database answers, and Redis when REDIS_URL is set.

    Public and cheap, so it names nothing and carries no error text (those go to the log).
    Brokers are not asked: an unreachable broker must not take the web tier out of rotation
    during the outage operators need it for. Broker health is on the connections page, the API
    (``connections/<id>/health/``) and ``/metrics`` (``dlqadmin_broker_up``)."""
    cached = _ready_cache.get("ready")
    if cached and time.monotonic() - cached[0] < READY_CACHE_SECONDS:
        return JsonResponse(cached[1], status=cached[2])
    checks = {"database": _database_ok()}
    if settings.REDIS_URL:
        checks["redis"] = _redis_ok()
    ok = all(checks.values())
    body = {
        "status": "ok" if ok else "unavailable",
        "checks": {name: "ok" if up else "unavailable" for name, up in checks.items()},
    }
    status = 200 if ok else 503
    _ready_cache["ready"] = (time.monotonic(), body, status)
    return JsonResponse(body, status=status)


def _metrics_allowed(request) -> bool:
    token = settings.DLQADMIN_METRICS_TOKEN
    if token:
        supplied = request.headers.get("Authorization", "")
        return hmac.compare_digest(supplied, f"Bearer {token}")
    return in_networks(client_ip(request), settings.DLQADMIN_METRICS_ALLOWED_NETS)


@require_GET
@never_cache
def metrics(request):
    """Prometheus text format. Needs ``Authorization: Bearer $DLQADMIN_METRICS_TOKEN`` when that is
    set; otherwise only clients in DLQADMIN_METRICS_ALLOWED_NETS (default loopback) get an answer."""
    if not _metrics_allowed(request):
        return JsonResponse({"error": "metrics need the bearer token or an allowed network"}, status=403)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DlqadminCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
