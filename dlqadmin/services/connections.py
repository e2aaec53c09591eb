"""Connections: map models to the broker contract, create / update / delete, check health, discover.

Writes are for admins (``manage_connections``; ``actor=None`` is the system) and audited. The
dashboard forms, the API and the Django admin all call these: none saves a connection itself.
Credentials are write-only: ``password`` / ``tls_client_key`` / ``schema_registry_secret`` None
keeps the stored value, "" clears it; they are encrypted here and never put in an audit record.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import brokers
from brokers.base import ConnectionConfig, DiscoveredSource, Health, SourceSpec, TLSOptions
from dlqadmin import crypto, permissions
from dlqadmin.models import Connection, HealthStatus, Source
from dlqadmin.services.audit import audit_record, audited_delete
from dlqadmin.services.harvest import prepare as source_prepare
from dlqadmin.validators import registry_url_problem

log = logging.getLogger(__name__)

#: changing one of these (or a credential) may point the connection at another broker: its
#: sources that need the broker set up are prepared again
REACHING_FIELDS = {"kind", "url", "options", "tls_enabled", "tls_verify", "tls_ca_cert", "tls_client_cert"}
#: what ``connection_update`` may change besides the write-only credentials
CONNECTION_FIELDS = (
    "name",
    "kind",
    "url",
    "username",
    "options",
    "tls_enabled",
    "tls_verify",
    "tls_ca_cert",
    "tls_client_cert",
    "schema_registry_url",
    "schema_registry_username",
)


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


def source_spec(source: Source, *, prepared: bool = True) -> SourceSpec:
    """The adapter's view of a source. Its options are the user's over what ``prepare()`` found
    (``Source.prepared_options``); ``prepared=False`` gives the user's alone (for ``prepare``)."""
    found = dict(source.prepared_options or {}) if prepared else {}
    return SourceSpec(
        name=source.name,
        mode=source.mode,
        address=source.address,
        options={**found, **(source.options or {})},
        remove_after_harvest=source.remove_after_harvest,
        cursor=dict(source.cursor or {}),
    )


def connection_validate(connection: Connection) -> None:
    """Raise ValidationError unless ``connection`` (saved or not) may be saved as it is: the
    model's own checks, and a connection with sources keeps its kind (their modes depend on it)."""
    if connection.pk is not None:
        stored = Connection.objects.filter(pk=connection.pk).values_list("kind", flat=True).first()
        if stored not in (None, connection.kind) and connection.sources.exists():
            raise ValidationError({"kind": "cannot change the kind of a connection with sources"})
    problem = registry_url_problem(connection.schema_registry_url)
    if problem:
        raise ValidationError({"schema_registry_url": problem})
    connection.full_clean()


@transaction.atomic
def connection_create(
    *,
    actor=None,
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
    schema_registry_url: str = "",
    schema_registry_username: str = "",
    schema_registry_secret: str = "",
    remote_addr: str | None = None,
) -> Connection:
    """Add a connection. Raises ValidationError (e.g. a taken name), PermissionDenied."""
    permissions.require(actor, permissions.MANAGE_CONNECTIONS)
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
        schema_registry_url=schema_registry_url,
        schema_registry_username=schema_registry_username,
    )
    connection.set_password(password)
    connection.set_tls_client_key(tls_client_key)
    connection.set_schema_registry_secret(schema_registry_secret)
    connection_validate(connection)
    connection.save()
    audit_record(
        actor=actor,
        action="connection.create",
        target=connection,
        detail={"name": name, "kind": kind, "password_changed": bool(password)},
        remote_addr=remote_addr,
    )
    return connection


@transaction.atomic
def connection_update(
    *,
    actor=None,
    connection: Connection,
    password: str | None = None,
    tls_client_key: str | None = None,
    schema_registry_secret: str | None = None,
    remote_addr: str | None = None,
    **changes,
) -> Connection:
    """Change the given fields (names in CONNECTION_FIELDS) and/or credentials; returns the saved
    row. The kind of a connection with sources cannot change (their modes are kind-specific).
    Raises ValidationError, PermissionDenied; TypeError for a field that is not changeable."""
    permissions.require(actor, permissions.MANAGE_CONNECTIONS)
    unknown = set(changes) - set(CONNECTION_FIELDS)
    if unknown:
        raise TypeError(f"connection_update cannot change {', '.join(sorted(unknown))}")
    connection = Connection.objects.select_for_update().get(pk=connection.pk)
    changed = sorted(k for k, v in changes.items() if getattr(connection, k) != v)
    for name in changed:
        setattr(connection, name, changes[name])
    if password is not None:
        connection.set_password(password)
    if tls_client_key is not None:
        connection.set_tls_client_key(tls_client_key)
    if schema_registry_secret is not None:
        connection.set_schema_registry_secret(schema_registry_secret)
    connection_validate(connection)
    connection.save()
    credentials = password is not None or tls_client_key is not None
    if schema_registry_secret is not None:
        changed.append("schema_registry_secret")  # the registry's: the broker is not prepared again
    audit_record(
        actor=actor,
        action="connection.update",
        target=connection,
        detail={
            "name": connection.name,
            "changed": changed + (["credentials"] if credentials else []),
            "password_changed": password is not None,
        },
        remote_addr=remote_addr,
    )
    if REACHING_FIELDS & set(changed) or credentials:
        transaction.on_commit(lambda: source_prepare.connection_sources_prepare(connection=connection))
    return connection


@transaction.atomic
def connection_delete(*, actor=None, connection: Connection, remote_addr: str | None = None) -> None:
    """Delete a connection without sources. Raises ProtectedError (it has sources), PermissionDenied."""
    permissions.require(actor, permissions.MANAGE_CONNECTIONS)
    detail = {"name": connection.name}
    audited_delete(
        connection, actor=actor, action="connection.delete", detail=detail, remote_addr=remote_addr
    )


def connection_check_health(
    *, connection: Connection, timeout: float = 5.0, by: str = "test connection"
) -> Health:
    """Ask the broker, record the answer on the connection (``by``: who asked). Never raises for
    broker trouble."""

    async def check() -> Health:
        async with brokers.get_adapter(connection_config(connection, timeout=timeout)) as adapter:
            return await adapter.health()

    try:
        health = brokers.run(check)
    except brokers.BrokerError as exc:
        health = Health(ok=False, error=str(exc))
    connection_record_health(connection=connection, health=health, by=by)
    return health


def connection_record_health(*, connection: Connection, health: Health, by: str = "health check") -> None:
    """Write ``health`` on the connection, saying who saw it (``by``: "harvester", "redrive
    worker", "beat check", "test connection" ...). An update of the health columns only: the
    connection's ``updated_at`` (which the harvester watches for edits) does not move."""
    connection.health_status = HealthStatus.OK if health.ok else HealthStatus.ERROR
    connection.last_checked_at = timezone.now()
    connection.last_error = "" if health.ok else (health.error or "unreachable")[:2000]
    connection.health_checked_by = by[:32]
    if health.server_version:
        connection.server_version = health.server_version[:100]
    connection.latency_ms = health.latency_ms
    Connection.objects.filter(pk=connection.pk).update(
        health_status=connection.health_status,
        last_checked_at=connection.last_checked_at,
        last_error=connection.last_error,
        health_checked_by=connection.health_checked_by,
        server_version=connection.server_version,
        latency_ms=connection.latency_ms,
    )
    if not health.ok:
        log.warning("connection %s unhealthy (%s): %s", connection.name, by, health.error)


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


#: the Connection columns that hold a credential encrypted with DLQADMIN_ENCRYPTION_KEY
ENCRYPTED_FIELDS = ("password_encrypted", "tls_client_key_encrypted")


@transaction.atomic
def connections_reencrypt(*, actor=None) -> dict[str, int]:
    """Encrypt every stored credential again under the newest key of DLQADMIN_ENCRYPTION_KEY.

    One transaction: a credential no configured key can decrypt raises DecryptionError (naming
    the connection) and nothing changes. Credentials already under the newest key are left as
    they are, so a second run changes nothing. Returns the counts."""
    counts = {"connections": 0, "reencrypted": 0, "already_current": 0, "empty": 0}
    for connection in Connection.objects.select_for_update().order_by("pk"):
        counts["connections"] += 1
        changed = {}
        for field in ENCRYPTED_FIELDS:
            token = getattr(connection, field)
            if not token:
                counts["empty"] += 1
            elif crypto.is_under_newest_key(token):
                counts["already_current"] += 1
            else:
                try:
                    changed[field] = crypto.reencrypt(token)
                except crypto.DecryptionError:
                    raise crypto.DecryptionError(
                        f"connection {connection.name!r}: {field} cannot be decrypted with any key of "
                        "DLQADMIN_ENCRYPTION_KEY (nothing was changed)"
                    ) from None
        if changed:
            # no save(): updated_at stays the time of the last edit by a person
            Connection.objects.filter(pk=connection.pk).update(**changed)
            counts["reencrypted"] += len(changed)
    if counts["reencrypted"]:
        audit_record(actor=actor, action="connection.reencrypt", count=counts["reencrypted"], detail=counts)
    return counts
