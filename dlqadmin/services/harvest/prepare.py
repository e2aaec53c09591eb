"""Preparing sources: setting the broker up so a source's failures are captured at all.

Some source modes capture failures only once the broker is set up for them
(``Capability.PREPARE``; NATS sends its max-deliveries / terminated advisories to listeners
only, so a capture stream must exist first, and what happened before it existed is lost).
``source_prepare`` runs the adapter's ``prepare()`` and records the outcome on the source:
``prepared_at``, ``prepare_note`` (where failures are captured) and ``prepared_options`` (what
the harvest must read, e.g. a stream of the user's that already captured the advisories) when it
worked; ``prepare_error``, also shown as the source's ``last_error``, when it did not.

It never raises for broker trouble: the source stays stored, and the next enable or edit, or
the harvest (:func:`harvest_preparing`), prepares it again. ``services/sources.py`` and
``services/connections.py`` call it after their write commits (a broker call can take the whole
connect timeout: never inside a transaction holding the row's lock).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.utils import timezone

import brokers
from brokers.base import (
    BrokerAdapter,
    BrokerError,
    Capability,
    HarvestResult,
    NotPrepared,
    Preparation,
    Sink,
    SourceSpec,
)
from dlqadmin.models import Source
from dlqadmin.services import connections as _connections  # a module: connections imports this one

log = logging.getLogger("dlqadmin.services.source_prepare")  # the pre-package name, kept for logging configs

#: seconds to wait for the broker when a save prepares a source (the request waits for it)
PREPARE_TIMEOUT = 5.0
#: how a failed prepare starts in the source's ``last_error``
NOT_PREPARED = "not prepared: "


def needs_prepare(source: Source) -> bool:
    """Whether ``source``'s mode captures failures only after ``prepare()`` (Capability.PREPARE)."""
    try:
        return Capability.PREPARE in brokers.capabilities(source.connection.kind, source.mode)
    except (BrokerError, ImportError):
        return False


@dataclass(frozen=True)
class PrepareState:
    """For pages and the API: ``status`` is "" (nothing to prepare), ``pending``, ``ready`` or
    ``failed``; ``text`` says where failures are captured, or why they are not."""

    status: str
    text: str


def prepare_state(source: Source) -> PrepareState:
    if not needs_prepare(source):
        return PrepareState("", "")
    if source.prepare_error:
        return PrepareState("failed", NOT_PREPARED + source.prepare_error)
    if source.prepared_at:
        return PrepareState("ready", source.prepare_note)
    if not source.enabled:
        return PrepareState("pending", "not prepared: failures are captured once the source is enabled")
    return PrepareState("pending", "not prepared yet: the next harvest prepares it")


def source_prepare(*, source: Source, timeout: float = PREPARE_TIMEOUT) -> bool:
    """Prepare ``source`` on its broker now and record the outcome on the row and on ``source``.

    Returns whether it is prepared (True when its mode needs nothing). Idempotent. Never raises
    for broker trouble (recorded as the source's error instead). Call it outside transactions.
    """
    sources_prepare(sources=[source], timeout=timeout)
    return not (needs_prepare(source) and source.prepare_error)


def connection_sources_prepare(*, connection, timeout: float = PREPARE_TIMEOUT) -> None:
    """Prepare the enabled sources of ``connection`` that need it (it now points at another
    broker, or reaches it differently). Same guarantees as :func:`source_prepare`."""
    sources = connection.sources.filter(enabled=True).select_related("connection").order_by("pk")
    sources_prepare(sources=list(sources), timeout=timeout)


def sources_prepare(*, sources: list[Source], timeout: float = PREPARE_TIMEOUT) -> None:
    """Prepare ``sources`` (all of one connection) through one broker connection and record each
    outcome. A broker that cannot be reached fails the rest with the same error at once, so a
    save waits at most about one ``timeout``. Never raises for broker trouble."""
    sources = [source for source in sources if needs_prepare(source)]
    if not sources:
        return
    specs = [_connections.source_spec(source, prepared=False) for source in sources]
    config = _connections.connection_config(sources[0].connection, timeout=timeout)

    async def prepare() -> list[Preparation | str]:
        outcomes: list[Preparation | str] = []
        async with brokers.get_adapter(config) as adapter:
            for spec in specs:
                try:
                    outcomes.append(await adapter.prepare(spec))
                except BrokerError as exc:
                    outcomes.append(str(exc))
                    if not exc.permanent:  # unreachable: the others would wait as long
                        break
        return outcomes

    try:
        outcomes = brokers.run(prepare)
    except BrokerError as exc:
        outcomes = [str(exc)]
    except Exception as exc:  # a bug in an adapter must not turn the save that got here into a 500
        log.exception("preparing %s failed unexpectedly", ", ".join(s.name for s in sources))
        outcomes = [f"unexpected error: {exc!r}"]
    outcomes += [outcomes[-1]] * (len(sources) - len(outcomes))
    for source, outcome in zip(sources, outcomes, strict=True):
        if isinstance(outcome, str):
            _record_failure(source, outcome)
        else:
            _record_success(source, outcome)


async def source_prepare_with(adapter: BrokerAdapter, *, source: Source) -> SourceSpec:
    """Prepare ``source`` through an open ``adapter`` and record the outcome; returns the
    source's harvest spec with the new prepared options. Raises BrokerError (recorded)."""
    try:
        preparation = await adapter.prepare(_connections.source_spec(source, prepared=False))
    except BrokerError as exc:
        await sync_to_async(_record_failure, thread_sensitive=True)(source, str(exc))
        raise BrokerError(NOT_PREPARED + str(exc), permanent=exc.permanent) from exc
    await sync_to_async(_record_success, thread_sensitive=True)(source, preparation)
    return _connections.source_spec(source)


async def harvest_preparing(
    adapter: BrokerAdapter, *, source: Source, spec: SourceSpec, sink: Sink, **kwargs
) -> tuple[HarvestResult, SourceSpec]:
    """``adapter.harvest(spec, sink, **kwargs)``; when the broker says the source is not prepared
    (it never was, or someone deleted its capture), prepare it and harvest once more. Returns
    the result and the spec the harvest used. Raises BrokerError."""
    try:
        return await adapter.harvest(spec, sink, **kwargs), spec
    except NotPrepared as exc:
        log.warning("%s is not prepared (%s): preparing it", source.name, exc)
    spec = await source_prepare_with(adapter, source=source)
    return await adapter.harvest(spec, sink, **kwargs), spec


def _record_success(source: Source, preparation: Preparation) -> None:
    source.prepared_at = timezone.now()
    source.prepare_error = ""
    source.prepare_note = preparation.note
    source.prepared_options = dict(preparation.options)
    Source.objects.filter(pk=source.pk).update(
        prepared_at=source.prepared_at,
        prepare_error="",
        prepare_note=source.prepare_note,
        prepared_options=source.prepared_options,
    )
    # the source's error was that it could not be prepared: no longer true
    if Source.objects.filter(pk=source.pk, last_error__startswith=NOT_PREPARED).update(last_error=""):
        source.last_error = ""
    log.info("prepared %s: %s", source.name, preparation.note or "nothing to set up")


def _record_failure(source: Source, error: str) -> None:
    source.prepare_error = error
    source.last_error = NOT_PREPARED + error
    source.last_error_at = timezone.now()
    Source.objects.filter(pk=source.pk).update(
        prepare_error=error, last_error=source.last_error, last_error_at=source.last_error_at
    )
    log.warning("cannot prepare %s: %s", source.name, error)
