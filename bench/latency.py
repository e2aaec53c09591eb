"""Measurement 4: dashboard, API and /metrics server time over the large dead-letter table.

Each case is requested through Django's in-process test client as a signed-in operator: the
time is the server's (URL resolution, middleware, queries, template rendering), with no network
and no browser. Paths come from the URL conf (``reverse``), so renamed routes still work; a case
whose route does not exist is reported as not measured. Each case: 3 warm-up requests, then up
to BENCH_LATENCY_SAMPLES requests or BENCH_LATENCY_SECONDS, whichever comes first."""

from __future__ import annotations

import time
from datetime import timedelta

from django.db.models import Count

from dlqadmin.models import DeadLetter, ErrorGroup

from . import data, users
from .context import Context
from .report import Metric, summary
from .table import Fixture

LIST_MS = 50
SEARCH_MS = 300
METRICS_MS = 50
WARM_UP = 3


def cases(fixture: Fixture) -> list[tuple[str, str | None, dict, int]]:
    """(label, path, query, target ms) for every case, on both the dashboard and the API."""
    busiest = fixture.sources[-1]
    until = fixture.last - timedelta(days=1)
    since = until - timedelta(days=7)
    filtered = {"source": busiest.pk, "status": "new", "since": since.isoformat(), "until": until.isoformat()}
    header = {"header": "tenant:tenant-07"}
    rare = {"q": data.order_id(fixture.rows // 2 + 17)}
    common = {"q": data.COMMON_PHRASE}
    letter = DeadLetter.objects.order_by("id").values_list("id", flat=True)[fixture.rows // 3]
    group = (
        ErrorGroup.objects.annotate(n=Count("dead_letter_states"))
        .order_by("-n")
        .values_list("id", flat=True)
        .first()
        if fixture.rows <= 100_000
        else ErrorGroup.objects.order_by("-count").values_list("id", flat=True).first()
    )
    found = []
    for surface, list_name, detail_name, group_name, groups_name in (
        ("dashboard", "dlq-messages", "dlq-message", "dlq-group", "dlq-groups"),
        (
            "API",
            "dlq-api-message-list",
            "dlq-api-message-detail",
            "dlq-api-error-group-detail",
            "dlq-api-error-group-list",
        ),
    ):
        listing = users.url(list_name)
        found += [
            (f"{surface}: message list, first page", listing, {}, LIST_MS),
            (f"{surface}: filtered list (source + status + time range)", listing, filtered, LIST_MS),
            (f"{surface}: header filter", listing, header, LIST_MS),
            (f"{surface}: free-text search, rare (an order id)", listing, rare, SEARCH_MS),
            (f"{surface}: free-text search, common phrase", listing, common, SEARCH_MS),
            (f"{surface}: message detail", users.url(detail_name, letter), {}, LIST_MS),
            (f"{surface}: error-group page", users.url(group_name, group), {}, LIST_MS),
            (f"{surface}: error-group list", users.url(groups_name), {}, LIST_MS),
        ]
        if surface == "dashboard":  # the API has no overview: its figures are the lists above
            found.append(("dashboard: overview", users.url("dlq-overview"), {}, LIST_MS))
            # a header-filtered page sends its rows first and fetches this count right after
            count = users.url("dlq-messages-count")
            found.append(
                ("dashboard: header filter's match count", count, {**header, "capped": "1"}, LIST_MS)
            )
    # what Prometheus scrapes (every 15 s or so): tallies and counters, never the big tables
    found.append(("metrics: /metrics scrape", users.url("dlq-metrics"), {}, METRICS_MS))
    return found


def measure(client, path: str, query: dict, samples: int, seconds: float) -> list[float]:
    for _ in range(WARM_UP):
        response = client.get(path, query)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} {query} answered {response.status_code}")
    timings: list[float] = []
    deadline = time.monotonic() + seconds
    while len(timings) < samples and (time.monotonic() < deadline or len(timings) < 5):
        started = time.perf_counter()
        response = client.get(path, query)
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path} {query} answered {response.status_code}")
    return timings


def run(ctx: Context, fixture: Fixture | None) -> list[Metric]:
    if fixture is None:
        return [Metric("latency", "dashboard and API latency", "not measured: BENCH_TABLE_ROWS=0")]
    client = users.signed_in_client()
    metrics = []
    rows = f"{DeadLetter.objects.count():,}"
    for label, path, query, target in cases(fixture):
        if path is None:
            metrics.append(
                Metric("latency", label, "not measured: route not in the URL conf", f"p95 <= {target} ms")
            )
            continue
        stats = summary(measure(client, path, query, ctx.config.latency_samples, ctx.config.latency_seconds))
        metrics.append(
            Metric(
                "latency",
                label,
                f"p50 {stats['p50']:.1f} ms / p95 {stats['p95']:.1f} ms",
                f"p95 <= {target} ms",
                stats["p95"] <= target,
                stats["p95"] / target,
                f"GET {path}{'?' if query else ''}{'&'.join(f'{k}={v}' for k, v in query.items())} "
                f"over {rows} rows, {stats['samples']} samples",
                stats,
            )
        )
    return metrics
