"""Connections: map models to the broker contract, create/update, check health, discover."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

import brokers
from brokers.base import ConnectionConfig, DiscoveredSource, Health, SourceSpec, TLSOptions
from dlqadmin.models import Connection, HealthStatus, Source

log = logging.getLogger(__name__)


def connection_config(connection: Connection, *, timeout: float = 10.0) -> ConnectionConfig:
    """The adapter's view of a connection (credentials decrypted here, nowhere else)."""
    return ConnectionConfig(
        kind=connection.kind,
        url=connection.url,
        username=connection.username,
        password=connection.password,
        tls=TLSOptions(
            enabled=connection.tls_enabled,
            verify=connection.tls_verify,
            ca_pem=connection.tls_ca_cert,
            client_cert_pem=connection.tls_client_cert,
            client_key_pem=connection.tls_client_key,
        ),
        options=dict(connection.options or {}),
        timeout=timeout,
    )


def source_spec(source: Source) -> SourceSpec:
    return SourceSpec(
        name=source.name,
        mode=source.mode,
        address=source.address,
        options=dict(source.options or {}),
        remove_after_harvest=source.remove_after_harvest,
        cursor=dict(source.cursor or {}),
    )


@transaction.atomic
def connection_create(
    *,
    name: str,
    kind: str,
    url: str,
    username: str = "",
    password: str = "",
    options: dict | None = None,
    tls_enabled: bool = False,
    tls_verify: bool = True,
    tls_ca_cert: str = "",
    tls_client_cert: str = "",
    tls_client_key: str = "",
) -> Connection:
    connection = Connection(
        name=name,
        kind=kind,
        url=url,
        username=username,
        options=options or {},
        tls_enabled=tls_enabled,
        tls_verify=tls_verify,
        tls_ca_cert=tls_ca_cert,
        tls_client_cert=tls_client_cert,
    )
    connection.set_password(password)
    connection.set_tls_client_key(tls_client_key)
    connection.full_clean()
    connection.save()
    return connection


def connection_check_health(*, connection: Connection, timeout: float = 5.0) -> Health:
    """Ask the broker, record the answer on the connection. Never raises for broker trouble."""

    async def check() -> Health:
        async with brokers.get_adapter(connection_config(connection, timeout=timeout)) as adapter:
            return await adapter.health()

    try:
        health = brokers.run(check)
    except brokers.BrokerError as exc:
        health = Health(ok=False, error=str(exc))
    connection_record_health(connection=connection, health=health)
    return health


def connection_record_health(*, connection: Connection, health: Health) -> None:
    connection.health_status = HealthStatus.OK if health.ok else HealthStatus.ERROR
    connection.last_checked_at = timezone.now()
    connection.last_error = "" if health.ok else health.error
    if health.server_version:
        connection.server_version = health.server_version[:100]
    connection.latency_ms = health.latency_ms
    Connection.objects.filter(pk=connection.pk).update(
        health_status=connection.health_status,
        last_checked_at=connection.last_checked_at,
        last_error=connection.last_error,
        server_version=connection.server_version,
        latency_ms=connection.latency_ms,
    )
    if not health.ok:
        log.warning("connection %s unhealthy: %s", connection.name, health.error)


def connection_discover(*, connection: Connection, timeout: float = 10.0) -> list[DiscoveredSource]:
    """Candidate dead-letter locations, marked with whether a Source already harvests them.

    Raises BrokerError."""

    async def discover() -> list[DiscoveredSource]:
        async with brokers.get_adapter(connection_config(connection, timeout=timeout)) as adapter:
            return await adapter.discover()

    found = brokers.run(discover)
    known = set(connection.sources.values_list("mode", "address"))
    for item in found:
        item.options = {**item.options, "already_added": (item.mode, item.address) in known}
    return found
