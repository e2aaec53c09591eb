"""Messages: the filterable dead-letter table, bulk discard / resolve, and export."""

from __future__ import annotations

from datetime import datetime

from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied
from django.db.models import BinaryField, F, Q
from django.db.models.functions import Substr
from django.http import HttpResponseBadRequest, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from dlqadmin import permissions, selectors_dashboard
from dlqadmin.models import BrokerKind, DeadLetter, DeadLetterStatus, Source
from dlqadmin.selectors import (
    DeadLetterFilter,
    FilterError,
    dead_letter_page,
    dead_letters_for,
    error_groups_for,
    visible_connections,
    visible_sources,
)
from dlqadmin.services.audit import audit_record
from dlqadmin.services.dead_letters import dead_letters_discard, dead_letters_resolve
from dlqadmin.services.export import iter_jsonl
from dlqadmin.services.masking import Masker
from dlqadmin.services.search import search_backlog_size
from dlqadmin.validators import is_id, parse_id

from .common import (
    Option,
    SelectionError,
    client_addr,
    filter_query,
    is_htmx,
    masker_for,
    non_blank,
    page,
    requires,
    safe_next,
    selection_from,
    url_for_pk,
)
from .presenters import PREVIEW_CHARS, PayloadView, clip

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
STATUS_CHOICES = DeadLetterStatus.choices
#: masking needs the whole payload (a JSON path in a prefix cannot be found), so a masked user's
#: preview is of the masked payload when it is at most this big, and a note otherwise
MASKED_PREVIEW_LIMIT = 256 * 1024
MASKED_PREVIEW_NOTE = "(masked; open the message to see it)"
#: the columns a table row shows (with its source's name and broker kind, ``ROW_JOINED``): the
#: rest of a dead letter stays in the database
ROW_FIELDS = (
    "id",
    "source_id",
    "failed_at",
    "status",
    "reason",
    "error_class",
    "error_message",
    "origin_queue",
    "origin_topic",
    "origin_subject",
    "payload_available",
    "payload_size",
)
KIND_LABELS = dict(BrokerKind.choices)
ROW_JOINED = {"source_name": F("source__name"), "broker_kind": F("source__connection__kind")}


def payload_preview_for(masker: Masker, letter: DeadLetter, payload: bytes | None = None) -> str:
    """One-line preview from the annotated payload prefix or, where masking rules apply for this
    user, from the masked whole ``payload`` (see ``_masked_payloads``)."""
    if masker.hides(letter.source_id):
        if payload is None:
            return MASKED_PREVIEW_NOTE
        return PayloadView(data=masker.payload(letter.source_id, payload)).preview
    head = bytes(getattr(letter, "payload_head", b"") or b"")
    view = PayloadView(data=head)
    text = view.preview
    if letter.payload_size > len(head) and not text.endswith("…"):
        text += "…"
    return text


def _masked_payloads(masker: Masker, rows: list[DeadLetter]) -> dict[int, bytes]:
    """Whole payloads of the rows whose preview must be masked (one query, bounded sizes)."""
    wanted = [r.pk for r in rows if masker.hides(r.source_id) and r.payload_size <= MASKED_PREVIEW_LIMIT]
    if not wanted:
        return {}
    return {pk: bytes(p) for pk, p in DeadLetter.objects.filter(pk__in=wanted).values_list("pk", "payload")}


def _page_size(data: QueryDict) -> int:
    try:
        size = int(data.get("page_size") or DEFAULT_PAGE_SIZE)
    except ValueError:
        return DEFAULT_PAGE_SIZE
    return size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE


def _watched_sources(filters: DeadLetterFilter) -> list[int]:
    """Source ids the live "N new" banner counts (empty = every source)."""
    if not filters.sources and not filters.connections:
        return []
    qs = Source.objects.all()
    if filters.sources:
        ids = [parse_id(v) for v in filters.sources if is_id(v)]
        qs = qs.filter(Q(pk__in=ids) | Q(name__in=filters.sources))
    if filters.connections:
        ids = [parse_id(v) for v in filters.connections if is_id(v)]
        qs = qs.filter(Q(connection_id__in=ids) | Q(connection__name__in=filters.connections))
    return list(qs.values_list("pk", flat=True)) or [0]


def _present_rows(masker: Masker, rows: list[DeadLetter]) -> None:
    """What each table row (``_message_rows.html``) shows, as this user may see it; the detail
    link's route is resolved once for the page, not per row."""
    payloads = _masked_payloads(masker, rows)
    detail_url = url_for_pk("dlq-message")
    for row in rows:
        row.preview = payload_preview_for(masker, row, payloads.get(row.pk))
        row.error_shown = masker.text(row.source_id, row.error_message)
        row.error_title, row.error_line = clip(row.error_shown, 300), clip(row.error_shown, 140)
        row.detail_url = detail_url(row.pk)
        row.kind_label = KIND_LABELS.get(row.broker_kind, row.broker_kind)


def results_context(request, data: QueryDict) -> tuple[dict, int]:
    """Everything the results partial needs for the filter in ``data``; (context, status)."""
    data = non_blank(data)
    query = {k: v for k, v in data.lists() if k not in ("cursor",)}
    context: dict = {"query": filter_query(query), "errors": {}, "rows": [], "total": 0}
    try:
        filters = DeadLetterFilter.parse(data)
        page_size = _page_size(data)
        pinned = DeadLetterFilter(**filters.__dict__)
        if pinned.max_id is None:
            pinned.max_id = selectors_dashboard.newest_dead_letter_id()
        visible = dead_letters_for(request.user, filters)
        qs = visible.only(*ROW_FIELDS).annotate(
            **ROW_JOINED,
            payload_head=Substr("payload", 1, PREVIEW_CHARS * 4, output_field=BinaryField()),
        )
        cursor = data.get("cursor") or None
        result = dead_letter_page(qs, cursor=cursor, size=page_size)
        count_deferred = False
        if cursor is None and result.next_cursor is None and all(r.pk <= pinned.max_id for r in result.items):
            total = selectors_dashboard.MatchCount(len(result.items), True)  # the whole set is on screen
        elif filters.headers:
            # a header's count reads its whole GIN posting list (10-30 ms at 1 M rows): the rows
            # go out first and the page fetches the (capped) count right after
            total, count_deferred = selectors_dashboard.MatchCount(len(result.items), False), True
        else:
            matching = dead_letters_for(request.user, pinned, counting=True)
            total = selectors_dashboard.count_capped(
                matching, at_least=len(result.items) if cursor is None else 0
            )
    except FilterError as exc:
        context["errors"] = exc.errors
        return context, 400
    _present_rows(masker_for(request), result.items)
    next_query = None
    if result.next_cursor:
        next_query = filter_query({**query, "cursor": [result.next_cursor]})
    context.update(
        filters=filters,
        rows=result.items,
        total=total.n,
        total_exact=total.exact,
        total_text=total.text,
        count_deferred=count_deferred,
        page_size=page_size,
        first_page=bool(not data.get("cursor")),
        next_query=next_query,
        selection_filter=filter_query(pinned.to_dict()),
        watched_sources=",".join(str(pk) for pk in _watched_sources(filters)),
    )
    if filters.q:
        context["search_pending"], context["search_pending_more"] = search_backlog_size()
    return context, 200


def _filter_form_context(request, data: QueryDict) -> dict:
    user = request.user
    # only what an <option> shows, as tuples: loading whole groups took ~10 ms a page
    visible_groups = error_groups_for(user).values_list(
        "id", "source_id", "error_class", "reason", "message_pattern"
    )
    groups = list(visible_groups.order_by("-last_seen")[:100])
    chosen = {parse_id(g) for g in data.getlist("error_group") if is_id(g)}
    known = {pk for pk, *_ in groups}
    groups += list(visible_groups.filter(pk__in=chosen - known))
    masker = masker_for(request)
    group_options = []
    for pk, source_id, error_class, reason, message_pattern in groups:
        pattern = masker.text(source_id, message_pattern)  # as show_groups masks it
        label = f"#{pk} {clip(error_class or reason, 30)}: {clip(pattern, 40)}"
        group_options.append(Option(str(pk), label, pk in chosen))
    chosen_sources = set(data.getlist("source"))
    chosen_connections = set(data.getlist("connection"))
    sources = visible_sources(user).order_by("name").values_list("pk", "name")
    connections = visible_connections(user).order_by("name").values_list("pk", "name")
    return {
        "f": data,
        "f_status": set(data.getlist("status")),
        "f_headers": [h for h in data.getlist("header") if h.strip()],
        "connection_options": [
            Option(str(pk), name, str(pk) in chosen_connections) for pk, name in connections
        ],
        "source_options": [
            Option(str(pk), name, str(pk) in chosen_sources or name in chosen_sources) for pk, name in sources
        ],
        "group_options": group_options,
        "reasons": selectors_dashboard.known_reasons(user),
        "status_choices": STATUS_CHOICES,
        "page_sizes": PAGE_SIZES,
        "presets": _presets(timezone.now()),
    }


def _presets(now: datetime) -> list[tuple[str, str]]:
    from datetime import timedelta

    fmt = "%Y-%m-%dT%H:%M"
    return [
        (label, (now - delta).strftime(fmt))
        for label, delta in (
            ("1 h", timedelta(hours=1)),
            ("24 h", timedelta(hours=24)),
            ("7 d", timedelta(days=7)),
        )
    ]


@require_GET
@requires(permissions.VIEW)
def messages_list(request):
    context, status = results_context(request, request.GET)
    if is_htmx(request) and request.headers.get("HX-Target") == "results":
        response = page(request, "dlqadmin/_messages_results.html", context, status=status)
        clean = non_blank(request.GET).urlencode()
        response["HX-Push-Url"] = request.path + (f"?{clean}" if clean else "")
        return response
    context.update(_filter_form_context(request, request.GET), nav="messages")
    return page(request, "dlqadmin/messages.html", context, status=status)


@require_GET
@requires(permissions.VIEW)
def messages_count(request):
    """The exact number of messages matching a filter (the "count exactly" link, and the number
    "select all matching" will act on: the filter carries the page's pinned ``max_id``); with
    ``capped=1`` the page's capped count, fetched after the rows (header filters)."""
    data = non_blank(request.GET).copy()
    capped = data.pop("capped", None) == ["1"]
    try:
        filters = DeadLetterFilter.parse(data)
    except FilterError as exc:
        return HttpResponseBadRequest("; ".join(exc.errors.values()))
    visible = dead_letters_for(request.user, filters, counting=True)
    total = selectors_dashboard.count_capped(visible) if capped else selectors_dashboard.count_exact(visible)
    return page(
        request,
        "dlqadmin/_messages_count.html",
        {
            "total": total.n,
            "total_exact": total.exact,
            "total_text": total.text,
            "selection_filter": filter_query(filters.to_dict()),
        },
    )


BULK_ACTIONS = {
    "discard": (permissions.DISCARD, dead_letters_discard, "Discarded"),
    "resolve": (permissions.RESOLVE, dead_letters_resolve, "Resolved"),
}


@require_POST
@requires(permissions.VIEW)
def messages_bulk(request):
    """Discard or resolve the ticked rows, or every row matching the filter."""
    action = request.POST.get("action", "")
    if action not in BULK_ACTIONS:
        return HttpResponseBadRequest("unknown bulk action")
    permission, service, verb = BULK_ACTIONS[action]
    if not permissions.can(request.user, permission):
        raise PermissionDenied(f"your role does not allow: {permission}")
    back = QueryDict(request.POST.get("return", ""))
    try:
        selection = selection_from(request.POST)
    except SelectionError as exc:
        flash.error(request, "; ".join(exc.errors.values()))
    else:
        count = service(
            actor=request.user, ids=selection.ids, filters=selection.filters, remote_addr=client_addr(request)
        )
        skipped = " (messages queued for redrive are left alone)" if selection.is_filter else ""
        flash.success(request, f"{verb} {count} message{'s' if count != 1 else ''}{skipped}.")
    if is_htmx(request):
        context, status = results_context(request, back)
        return page(request, "dlqadmin/_messages_results.html", context, status=status)
    return redirect(safe_next(request) or reverse("dlq-messages") + ("?" + back.urlencode() if back else ""))


@require_POST
@requires(permissions.EXPORT)
def messages_export(request):
    """Stream the selection as JSON lines (payload base64, typed headers): lossless, or masked
    for a masked user; only messages of sources the user may see."""
    try:
        selection = selection_from(request.POST)
    except SelectionError as exc:
        return HttpResponseBadRequest("; ".join(exc.errors.values()))
    if selection.filters is not None:
        qs = dead_letters_for(request.user, selection.filters)
    else:
        qs = dead_letters_for(request.user).filter(pk__in=selection.ids)
    audit_record(
        actor=request.user,
        action="messages.export",
        count=qs.count(),
        detail={
            "format": "jsonl",
            "filter": selection.filters.to_dict() if selection.filters else {},
            "ids": (selection.ids or [])[:100],
        },
        remote_addr=client_addr(request),
    )
    response = StreamingHttpResponse(
        iter_jsonl(qs, user=request.user), content_type="application/x-ndjson; charset=utf-8"
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="dead-letters-{stamp}.jsonl"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
