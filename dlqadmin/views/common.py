"""Shared pieces of the dashboard views: role checks, rendering with permissions, selections."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import NamedTuple
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from dlqadmin import permissions
from dlqadmin.proxies import client_ip
from dlqadmin.selectors import DeadLetterFilter, FilterError, visibility_snapshot
from dlqadmin.services.masking import Masker
from dlqadmin.services.redrive import options as redrive_options
from dlqadmin.validators import parse_id

#: every action a template may ask about: ``{% if can.redrive %}``
ACTIONS = {
    "redrive": permissions.REDRIVE,
    "discard": permissions.DISCARD,
    "resolve": permissions.RESOLVE,
    "edit": permissions.EDIT,
    "export": permissions.EXPORT,
    "manage_groups": permissions.MANAGE_GROUPS,
    "manage_connections": permissions.MANAGE_CONNECTIONS,
    "harvest": permissions.HARVEST,
    "view_audit": permissions.VIEW_AUDIT,
}


def requires(action: str) -> Callable:
    """Login required, then the role must allow ``action`` (403 otherwise). The view runs in one
    ``visibility_snapshot``."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not permissions.can(request.user, action):
                raise PermissionDenied(f"your role does not allow: {action.replace('_', ' ')}")
            with visibility_snapshot():
                return view(request, *args, **kwargs)

        return login_required(wrapped)

    return decorator


def page(
    request: HttpRequest, template: str, context: dict | None = None, *, status: int = 200
) -> HttpResponse:
    """Render with ``can`` (what the user may do) so templates offer only allowed actions."""
    user = request.user
    can = {name: permissions.can(user, action) for name, action in ACTIONS.items()}
    return render(request, template, {"can": can, **(context or {})}, status=status)


class Option(NamedTuple):
    """One ``<option>`` of a filter ``<select>`` (the value as text: an id is not a number to
    format for a locale)."""

    value: str
    label: str
    selected: bool


#: stands in for the pk in a reversed URL (an int no real row has)
_PK_MARK = 918273645546372819


def url_for_pk(name: str) -> Callable[[int], str]:
    """``reverse(name, args=[pk])`` for a table of rows: the URL is reversed once and each pk is
    put into it, instead of resolving the route again for every row."""
    head, _, tail = reverse(name, args=[_PK_MARK]).rpartition(str(_PK_MARK))
    return lambda pk: f"{head}{int(pk)}{tail}"


def masker_for(request: HttpRequest) -> Masker:
    """The request's one ``Masker``: masking rules are looked up once per source, however many
    parts of the page (rows, filter options, group headings) show masked text."""
    masker = getattr(request, "_dlq_masker", None)
    if masker is None:
        masker = request._dlq_masker = Masker(request.user)
    return masker


def is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def safe_next(request: HttpRequest, value: str | None = None) -> str:
    """A same-site URL to go back to (``next`` field or the given value), or ""."""
    target = value if value is not None else request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""


def client_addr(request: HttpRequest) -> str | None:
    """The client's address for the audit trail (dlqadmin/proxies.py)."""
    return client_ip(request)


def filter_query(filter_dict: dict) -> str:
    """A filter dict as the query string the Messages page (and the API) understands."""
    return urlencode(filter_dict, doseq=True)


def non_blank(data: QueryDict) -> QueryDict:
    """``data`` without empty values: a GET form submits every field, filled or not."""
    clean = QueryDict(mutable=True)
    for key, values in data.lists():
        kept = [v for v in values if str(v).strip()]
        if kept:
            clean.setlist(key, kept)
    return clean


def parse_filter_query(query: str) -> DeadLetterFilter:
    """Raises FilterError."""
    return DeadLetterFilter.parse(non_blank(QueryDict(query or "")))


@dataclass
class Selection:
    """Which messages a bulk action is about: explicit ids, or every row matching a filter."""

    ids: list[int] | None = None
    filters: DeadLetterFilter | None = None

    @property
    def is_filter(self) -> bool:
        return self.filters is not None

    def hidden_fields(self) -> list[tuple[str, str]]:
        """Form fields that carry this selection to the next step."""
        if self.filters is not None:
            return [("select_all", "1"), ("filter", filter_query(self.filters.to_dict()))]
        return [("ids", str(pk)) for pk in self.ids or []]


class SelectionError(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


def selection_from(data: QueryDict) -> Selection:
    """``select_all=1`` + ``filter=<query>`` (every match), or ``ids`` (the ticked rows).

    Raises SelectionError."""
    if data.get("select_all") == "1":
        try:
            return Selection(filters=parse_filter_query(data.get("filter", "")))
        except FilterError as exc:
            raise SelectionError(exc.errors) from None
    try:
        ids = sorted({parse_id(v) for v in data.getlist("ids") if str(v).strip()})
    except ValueError:
        raise SelectionError({"ids": "ids must be integer message ids"}) from None
    if not ids:
        raise SelectionError({"ids": "select at least one message"})
    too_many = redrive_options.ids_problem(len(ids))
    if too_many:
        raise SelectionError({"ids": f"{too_many}: use “select all matching” instead"})
    return Selection(ids=ids)
