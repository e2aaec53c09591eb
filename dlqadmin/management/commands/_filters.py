"""Shared CLI helpers: the filter argument uses the same query-string syntax as the dashboard URL."""

from django.core.management.base import CommandError
from django.http import QueryDict

from dlqadmin.selectors import DeadLetterFilter, FilterError
from dlqadmin.validators import parse_id


def parse_filter(text: str | None) -> DeadLetterFilter:
    """``"status=new&source=orders-dlq&header=tenant:acme"`` -> DeadLetterFilter (CommandError if bad)."""
    try:
        return DeadLetterFilter.parse(QueryDict(text or "", mutable=False))
    except FilterError as exc:
        raise CommandError(f"bad --filter: {exc}") from None


def parse_ids(text: str) -> list[int]:
    try:
        return [parse_id(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise CommandError("--ids takes comma-separated integer ids, e.g. --ids 12,13,20") from None
