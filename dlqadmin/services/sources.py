"""Sources (dead-letter locations of a connection): create / update / delete.

Writes are for admins (``manage_connections``; ``actor=None`` is the system) and audited. The
dashboard forms, the API and the Django admin all call these: none saves a source itself. A
source's mode must be one its connection's broker adapter harvests (``brokers.adapter_class(kind)
.modes``), and a connection has at most one source per (mode, address).

An enabled source whose mode needs the broker set up first (``Capability.PREPARE``: the NATS
advisory capture stream) is prepared once the write commits: when it is created, enabled, moved
(connection, mode, address) or its options change, and on any save while it is not prepared.
A broker that is down does not fail the write: see :mod:`dlqadmin.services.harvest.prepare`.

``source_harvest_now`` is the one "harvest now" of the dashboard, the API and the admin: it
harvests, audits (success or failure) and leaves the failure on the source.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

import brokers
from brokers.base import BrokerError
from dlqadmin import permissions
from dlqadmin.models import Connection, Source
from dlqadmin.services.audit import audit_record, audited_delete
from dlqadmin.services.harvest.prepare import NOT_PREPARED, needs_prepare, source_prepare
from dlqadmin.services.harvest.store import DB_OUTAGES, HarvestReport, failure_text, source_harvest

#: what ``source_create`` / ``source_update`` may set besides connection, name, mode and address
SOURCE_SETTINGS = (
    "options",
    "enabled",
    "remove_after_harvest",
    "max_redrives",
    "auto_retry",
    "auto_retry_max_attempts",
    "auto_retry_backoff_seconds",
)
SOURCE_FIELDS = ("connection", "name", "mode", "address", *SOURCE_SETTINGS)
#: changing one of these points the source somewhere else: its harvest cursor starts over
MOVING_FIELDS = {"connection", "mode", "address"}
#: changing one of these prepares the source again (when it is enabled)
PREPARING_FIELDS = MOVING_FIELDS | {"enabled", "options"}


def source_modes(kind: str) -> tuple[str, ...]:
    """The source modes the adapter of ``kind`` harvests (none for an unknown kind)."""
    try:
        return tuple(brokers.adapter_class(kind).modes)
    except (BrokerError, ImportError):
        return ()


def source_validate(source: Source) -> None:
    """Raise ValidationError unless ``source`` (saved or not) may be saved as it is."""
    errors: dict[str, str] = {}
    connection = source.connection
    allowed = source_modes(connection.kind)
    if source.mode not in allowed:
        errors["mode"] = (
            f"a {connection.get_kind_display()} connection harvests "
            f"{', '.join(allowed) or 'no'} sources, not {source.mode!r}"
        )
    clashes = Source.objects.filter(connection=connection, mode=source.mode, address=source.address)
    if source.pk:
        clashes = clashes.exclude(pk=source.pk)
    clash = clashes.first()
    if clash is not None:
        errors["address"] = f"{source.address} is already a source of this connection ({clash.name})"
    if errors:
        raise ValidationError(errors)
    source.full_clean()


def _prepare_after_commit(source: Source) -> None:
    """Prepare ``source`` once the surrounding transaction commits (the Django admin wraps the
    whole save in one): the broker call never runs while the row is locked, and the instance
    the caller got back shows the outcome."""
    if source.enabled and needs_prepare(source):
        transaction.on_commit(lambda: source_prepare(source=source))


def _settings(values: dict, allowed: tuple[str, ...]) -> dict:
    unknown = set(values) - set(allowed)
    if unknown:
        raise TypeError(f"not a source setting: {', '.join(sorted(unknown))}")
    return values


@transaction.atomic
def source_create(
    *,
    actor=None,
    connection: Connection,
    name: str,
    mode: str,
    address: str,
    remote_addr: str | None = None,
    **settings,
) -> Source:
    """Add a source; ``settings`` (names in SOURCE_SETTINGS) default to the model's defaults.
    Raises ValidationError (mode, location, name), PermissionDenied."""
    permissions.require(actor, permissions.MANAGE_CONNECTIONS)
    source = Source(
        connection=connection, name=name, mode=mode, address=address, **_settings(settings, SOURCE_SETTINGS)
    )
    if source.options is None:
        source.options = {}
    source_validate(source)
    source.save()
    audit_record(
        actor=actor,
        action="source.create",
        target=source,
        detail={"name": name, "mode": mode, "address": address},
        remote_addr=remote_addr,
    )
    _prepare_after_commit(source)
    return source


@transaction.atomic
def source_update(*, actor=None, source: Source, remote_addr: str | None = None, **changes) -> Source:
    """Change the given fields (names in SOURCE_FIELDS); returns the saved row.
    Raises ValidationError, PermissionDenied; TypeError for a field that is not changeable."""
    permissions.require(actor, permissions.MANAGE_CONNECTIONS)
    _settings(changes, SOURCE_FIELDS)
    source = Source.objects.select_for_update(of=("self",)).select_related("connection").get(pk=source.pk)
    changed = sorted(k for k, v in changes.items() if getattr(source, k) != v)
    for name in changed:
        setattr(source, name, changes[name])
    if MOVING_FIELDS & set(changed):
        # the cursor (offsets, sequences) and what prepare() found belong to the old location
        source.cursor = {}
        source.prepared_options, source.prepare_note, source.prepare_error = {}, "", ""
        source.prepared_at = None
        if source.last_error.startswith(NOT_PREPARED):
            source.last_error = ""
    source_validate(source)
    source.save()
    audit_record(
        actor=actor,
        action="source.update",
        target=source,
        detail={"name": source.name, "changed": changed, "mode": source.mode, "address": source.address},
        remote_addr=remote_addr,
    )
    if PREPARING_FIELDS & set(changed) or source.prepared_at is None or source.prepare_error:
        _prepare_after_commit(source)
    return source


@transaction.atomic
def source_delete(*, actor=None, source: Source, remote_addr: str | None = None) -> None:
    """Delete a source. Raises ProtectedError (messages are stored for it), PermissionDenied."""
    permissions.require(actor, permissions.MANAGE_CONNECTIONS)
    detail = {"name": source.name, "mode": source.mode, "address": source.address}
    audited_delete(source, actor=actor, action="source.delete", detail=detail, remote_addr=remote_addr)


# ------------------------------------------------------------------------------------------
# Harvest now

#: a "harvest now" (dashboard, API default, admin action) stops after this many messages; the
#: harvester does the rest
HARVEST_NOW_LIMIT = 5000
#: the most an API caller may ask one request to harvest
HARVEST_NOW_MAX = 100_000


def source_harvest_now(
    *, actor, source: Source, limit: int = HARVEST_NOW_LIMIT, remote_addr: str | None = None
) -> HarvestReport:
    """One harvest pass over ``source`` asked for by a person (dashboard, API, admin): at most
    ``limit`` messages, written as one ``source.harvest`` AuditEvent whether it worked or not.

    A failure is also recorded as the source's last error (by ``source_harvest``) and raised:
    BrokerError, or any unforeseen error; a database outage is raised unrecorded."""
    permissions.require(actor, permissions.HARVEST)
    try:
        report = source_harvest(source=source, limit=limit)
    except DB_OUTAGES:
        raise
    except Exception as exc:
        audit_record(
            actor=actor,
            action="source.harvest",
            target=source,
            detail={"limit": limit, "error": failure_text(exc)[:1000]},
            remote_addr=remote_addr,
        )
        raise
    audit_record(
        actor=actor,
        action="source.harvest",
        target=source,
        count=report.inserted,
        detail={"limit": limit, "received": report.received, "duplicates": report.duplicates},
        remote_addr=remote_addr,
    )
    return report


def harvest_now_summary(source: Source, report: HarvestReport) -> str:
    """What the dashboard and the admin tell the person who asked for a harvest now."""
    more = "" if report.exhausted else f" More remain (backlog {report.backlog}); the harvester continues."
    return f"Harvested {source.name}: {report.inserted} new, {report.duplicates} already stored.{more}"
