"""Connections and sources: add / edit (write-only credentials), test, discover, enable, harvest."""

from __future__ import annotations

from django.contrib import messages as flash
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from brokers.base import BrokerError, Capability
from dlqadmin import permissions, selectors_dashboard
from dlqadmin.forms import ConnectionForm, SourceForm
from dlqadmin.models import Connection, Source
from dlqadmin.selectors import visible_sources
from dlqadmin.services import sources as source_services
from dlqadmin.services.connections import connection_check_health, connection_discover
from dlqadmin.services.harvest.prepare import prepare_state

from .common import client_addr, is_htmx, page, requires


@require_GET
@requires(permissions.VIEW)
def connection_list(request):
    rows = selectors_dashboard.connections_overview(user=request.user)
    for row in rows:
        for source_row in row.sources:
            caps = selectors_dashboard.source_capabilities(source_row.source)
            source_row.capabilities = selectors_dashboard.capability_names(caps)
            source_row.live_only = Capability.LIVE_ONLY in caps
            source_row.keeps_copy = Capability.REMOVE_FROM_DLQ not in caps
            source_row.prepare = prepare_state(source_row.source)
    replicas = selectors_dashboard.harvester_replicas(user=request.user)
    return page(
        request,
        "dlqadmin/connections.html",
        {"connections": rows, "replicas": replicas, "nav": "connections"},
    )


@require_http_methods(["GET", "POST"])
@requires(permissions.MANAGE_CONNECTIONS)
def connection_edit(request, pk: int | None = None):
    connection = get_object_or_404(Connection, pk=pk) if pk else None
    form = ConnectionForm(request.POST or None, instance=connection)
    if request.method == "POST" and form.is_valid():
        try:
            connection = form.save(actor=request.user, remote_addr=client_addr(request))
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            flash.success(
                request, f"Saved connection {connection.name}. Test it, then discover its dead-letter queues."
            )
            return redirect("dlq-connections")
    return page(
        request,
        "dlqadmin/connection_form.html",
        {"form": form, "connection": connection, "nav": "connections"},
        status=400 if form.is_bound and form.errors else 200,
    )


@require_POST
@requires(permissions.MANAGE_CONNECTIONS)
def connection_test(request, pk: int):
    connection = get_object_or_404(Connection, pk=pk)
    health = connection_check_health(connection=connection)
    connection.refresh_from_db()
    if is_htmx(request):
        return page(request, "dlqadmin/_connection_health.html", {"connection": connection, "tested": True})
    if health.ok:
        flash.success(
            request, f"{connection.name}: reachable ({connection.server_version or 'version unknown'})."
        )
    else:
        flash.error(request, f"{connection.name}: {health.error}")
    return redirect("dlq-connections")


@require_GET
@requires(permissions.MANAGE_CONNECTIONS)
def connection_discover_view(request, pk: int):
    """Ask the broker where dead letters collect; each candidate can be enabled as a source."""
    connection = get_object_or_404(Connection, pk=pk)
    error = ""
    found = []
    try:
        found = connection_discover(connection=connection)
    except BrokerError as exc:
        error = str(exc)
    forms = [
        (
            item,
            SourceForm(
                connection=connection,
                initial={
                    "name": _suggest_name(connection, item.address),
                    "mode": item.mode,
                    "address": item.address,
                    "enabled": True,
                    "remove_after_harvest": True,
                    "max_redrives": 5,
                },
                prefix=f"d{index}",
            ),
        )
        for index, item in enumerate(found)
    ]
    return page(
        request,
        "dlqadmin/discover.html",
        {
            "connection": connection,
            "found": forms,
            "error": error,
            "manual": SourceForm(connection=connection, initial={"max_redrives": 5}, prefix="m"),
            "nav": "connections",
        },
        status=502 if error else 200,
    )


def _suggest_name(connection: Connection, address: str) -> str:
    name = address if not Source.objects.filter(name=address).exists() else f"{connection.name}/{address}"
    return name[:100]


@require_POST
@requires(permissions.MANAGE_CONNECTIONS)
def source_add(request, pk: int):
    connection = get_object_or_404(Connection, pk=pk)
    prefix = request.POST.get("prefix", "m")
    form = SourceForm(request.POST, connection=connection, prefix=prefix if prefix.isalnum() else "m")
    if form.is_valid() and (done := _save_source(request, form, "Source {name} added.")):
        return done
    return page(
        request,
        "dlqadmin/source_form.html",
        {"form": form, "connection": connection, "source": None, "nav": "connections"},
        status=400,
    )


@require_http_methods(["GET", "POST"])
@requires(permissions.MANAGE_CONNECTIONS)
def source_edit(request, pk: int):
    source = get_object_or_404(Source.objects.select_related("connection"), pk=pk)
    form = SourceForm(request.POST or None, instance=source, connection=source.connection)
    if (
        request.method == "POST"
        and form.is_valid()
        and (done := _save_source(request, form, "Saved source {name}."))
    ):
        return done
    return page(
        request,
        "dlqadmin/source_form.html",
        {
            "form": form,
            "connection": source.connection,
            "source": source,
            "prepare": prepare_state(source),
            "nav": "connections",
        },
        status=400 if form.is_bound and form.errors else 200,
    )


def _save_source(request, form: SourceForm, saved: str):
    """Save a valid source form; on success flash ``saved`` (``{name}``: the source's name) and
    return the redirect to the list, else put the service's errors on the form and return None."""
    try:
        source = form.save(actor=request.user, remote_addr=client_addr(request))
    except ValidationError as exc:
        form.add_service_errors(exc)
        return None
    _flash_saved(request, source, saved.format(name=source.name))
    return redirect("dlq-connections")


def _flash_saved(request, source: Source, saved: str) -> None:
    """Saved, and whether the broker now captures its failures (advisory sources are prepared
    on save): the source is stored either way."""
    state = prepare_state(source)
    if state.status == "failed":
        flash.warning(request, f"{saved} It is {state.text}. Saving it again or the harvester retries.")
    elif state.status == "ready":
        flash.success(request, f"{saved} {state.text[:1].upper()}{state.text[1:]}.")
    else:
        flash.success(request, f"{saved} The harvester picks it up; or harvest it now.")


@require_POST
@requires(permissions.HARVEST)
def source_harvest_now(request, pk: int):
    source = get_object_or_404(visible_sources(request.user).select_related("connection"), pk=pk)
    try:
        report = source_services.source_harvest_now(
            actor=request.user, source=source, remote_addr=client_addr(request)
        )
    except BrokerError as exc:
        flash.error(request, f"Harvest of {source.name} failed: {exc}")
    else:
        flash.success(request, source_services.harvest_now_summary(source, report))
    return redirect("dlq-connections")
