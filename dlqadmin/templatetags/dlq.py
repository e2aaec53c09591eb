"""Tags for what list pages repeat on every row: a relative time, a status badge, a sparkline,
the options of a filter's ``<select>``.

Tags rather than ``{% include %}`` or template loops: an include renders a whole template per
use and every ``{{ }}`` is looked up, localized and escaped on its own, which on a 50-row
message table was most of the page's time. ``_time.html``, ``_status.html`` and ``_spark.html``
are these tags too, so every page shows them the same way."""

from __future__ import annotations

from html import escape

from django import template
from django.template.defaultfilters import timesince_filter
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from dlqadmin.services.connection_health import age_text, health_age_seconds

register = template.Library()
NEVER = mark_safe('<span class="muted">never</span>')


def quick_html(template: str, **values) -> SafeString:
    """``format_html`` for hot loops: each value escaped as ``conditional_escape`` does (its own
    HTML if it is safe, else its text with ``& < > " '`` escaped), without the lazy-translation
    checks that cost more than the escaping itself."""
    for name, value in values.items():
        own = getattr(value, "__html__", None)
        values[name] = own() if own is not None else escape(str(value))
    return mark_safe(template.format(**values))  # noqa: S308 - every value escaped just above


@register.simple_tag
def reltime(when) -> SafeString:
    """``<time>`` with the ISO time, the UTC time as its title and "… ago" as its text (app.js
    keeps that current); "never" when there is no time."""
    if not when:
        return NEVER
    local = timezone.template_localtime(when)  # what the date filter shows
    return quick_html(
        '<time datetime="{iso}" title="{utc} UTC" data-rel>{ago} ago</time>',
        iso=local.isoformat(),  # the date filter's "c"
        utc=f"{local.year:04d}-{local.month:02d}-{local.day:02d} "
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}",  # its "Y-m-d H:i:s"
        ago=timesince_filter(when),
    )


@register.simple_tag
def health_age(connection) -> SafeString:
    """How old a connection's health is and who saw it: "12 s ago, by the harvester"."""
    age = health_age_seconds(connection)
    if age is None:
        return mark_safe('<span class="muted small health-age">never checked</span>')  # noqa: S308
    by = f", by the {connection.health_checked_by}" if connection.health_checked_by else ""
    return quick_html(
        '<span class="muted small health-age" data-age-seconds="{age}">{text} ago{by}</span>',
        age=int(age),
        text=age_text(age),
        by=by,
    )


@register.simple_tag
def status_badge(status, label=None) -> SafeString:
    """The badge of a status value, showing ``label`` when given (e.g. a choice's display)."""
    return quick_html('<span class="badge st-{status}">{label}</span>', status=status, label=label or status)


@register.simple_tag
def spark(points, label, width=None, height=None) -> SafeString:
    """An SVG polyline of ``points`` (``views.groups.sparkline_points``), 112 x 24 unless given."""
    return quick_html(
        '<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        'aria-label="{label}"><polyline points="{points}" fill="none" stroke="currentColor" '
        'stroke-width="1.5"/></svg>',
        width=width or 112,
        height=height or 24,
        label=label,
        points=points,
    )


@register.simple_tag
def select_options(options) -> SafeString:
    """The ``<option>``s of a ``<select>`` from ``views.common.Option``s."""
    return mark_safe(  # noqa: S308 - quick_html escapes
        "".join(
            quick_html(
                '<option value="{value}" {selected}>{label}</option>',
                value=option.value,
                selected="selected" if option.selected else "",
                label=option.label,
            )
            for option in options
        )
    )
