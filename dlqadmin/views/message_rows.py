"""The rows of the Messages table (on the Messages page and an error group's page), as HTML
built once per row.

A row shows some twenty values. Through the template language each one is looked up,
localized and escaped on its own, and with an ``{% include %}`` or ``{% url %}`` per row that was
most of the page's rendering time. Here ``quick_html`` escapes every value exactly as the
template did, so the markup is the same; ``_messages_results.html`` only places the rows."""

from __future__ import annotations

from django.template.defaultfilters import filesizeformat
from django.utils.safestring import SafeString, mark_safe

from dlqadmin.models import BrokerKind, DeadLetter
from dlqadmin.templatetags.dlq import quick_html, reltime, status_badge

from .common import url_for_pk

ROW = (
    "<tr data-row>"
    '<td><input type="checkbox" name="ids" value="{pk}" data-row-check aria-label="Select message {pk}"></td>'
    '<td><a href="{url}" data-row-link>{failed}</a><div class="muted small">#{pk}</div></td>'
    '<td>{source}<div class="muted small">{kind}</div></td>'
    "<td>{status}{reason}</td>"
    '<td class="clip"><span class="err-class">{error_class}</span>'
    '<div class="small clip-line" title="{error_title}">{error_line}</div></td>'
    '<td class="mono small clip-line" title="{destination}">{destination_shown}</td>'
    '<td class="mono small clip-line payload-cell">{payload}<span class="muted"> · {size}</span></td>'
    "</tr>"
)
REASON = '<div class="muted small">{reason}</div>'
KIND_LABELS = dict(BrokerKind.choices)
PAYLOAD_GONE = mark_safe('<span class="muted">(payload gone from broker)</span>')


def row_html(letter: DeadLetter, *, url: str) -> SafeString:
    """One ``<tr>``; ``letter`` carries ``preview``, ``error_title`` and ``error_line`` as this
    user may see them (``messages._present_rows``), ``source_name`` and ``broker_kind``."""
    destination = letter.original_destination
    return quick_html(
        ROW,
        pk=str(letter.pk),  # as text: ids are not numbers to format for a locale
        url=url,
        failed=reltime(letter.failed_at),
        source=letter.source_name,
        kind=KIND_LABELS.get(letter.broker_kind, letter.broker_kind),
        status=status_badge(letter.status),
        reason=quick_html(REASON, reason=letter.reason) if letter.reason else "",
        error_class=letter.error_class or "–",
        error_title=letter.error_title,
        error_line=letter.error_line or "(no error message)",
        destination=destination,
        destination_shown=destination or "–",
        payload=letter.preview if letter.payload_available else PAYLOAD_GONE,
        size=filesizeformat(letter.payload_size),
    )


def rows_html(letters: list[DeadLetter]) -> None:
    """Set ``html`` on each of ``letters`` (the detail link's route is resolved once)."""
    detail_url = url_for_pk("dlq-message")
    for letter in letters:
        letter.html = row_html(letter, url=detail_url(letter.pk))
