"""Health endpoints for orchestrators and monitoring: /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
import hmac
import time

from django.conf import settings
from django.db import connection as db_connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

import brokers
from brokers.base import Health
from dlqadmin.metrics import DlqadminCollector
from dlqadmin.models import Connection
from dlqadmin.proxies import client_ip, in_networks
from dlqadmin.services.connections import connection_config, connection_record_health

READY_CACHE_SECONDS = 5.0
_ready_cache: dict[str, tuple[float, dict, int]] = {}


@require_GET
@never_cache
def healthz(request):
    """Liveness: the process is up and serving requests."""
    return JsonResponse({"status": "ok"})


def _check_database() -> dict:
    try:
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        return {"ok": False, "error": str(exc)[:300]}


def _check_redis() -> dict:
    if not settings.REDIS_URL:
        return {"ok": True, "detail": "not configured (in-memory channel layer)"}
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": str(exc)[:300]}


async def _broker_health(configs: dict[str, object]) -> dict[str, Health]:
    async def one(config) -> Health:
        try:
            async with brokers.get_adapter(config) as adapter:
                return await asyncio.wait_for(adapter.health(), timeout=config.timeout + 1)
        except Exception as exc:  # noqa: BLE001
            return Health(ok=False, error=str(exc) or type(exc).__name__)

    results = await asyncio.gather(*(one(c) for c in configs.values()))
    return dict(zip(configs, results, strict=True))


def _check_connections() -> dict:
    active = Connection.objects.filter(sources__enabled=True).distinct()
    connections = {c.name: c for c in active}
    if not connections:
        return {}
    configs = {name: connection_config(c, timeout=2.0) for name, c in connections.items()}
    results = brokers.run(_broker_health, configs)
    out = {}
    for name, health in results.items():
        connection_record_health(connection=connections[name], health=health)
        out[name] = {
            "ok": health.ok,
            "kind": connections[name].kind,
            "latency_ms": health.latency_ms,
            **({"error": health.error} if not health.ok else {}),
        }
    return out


@require_GET
@never_cache
def readyz(request):
    """Readiness: the database, Redis and every connection with an enabled source answer."""
    cached = _ready_cache.get("ready")
    if cached and time.monotonic() - cached[0] < READY_CACHE_SECONDS:
        return JsonResponse(cached[1], status=cached[2])
    checks = {"database": _check_database(), "redis": _check_redis()}
    connections = _check_connections() if checks["database"]["ok"] else {}
    ok = all(c["ok"] for c in checks.values()) and all(c["ok"] for c in connections.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks, "connections": connections}
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
