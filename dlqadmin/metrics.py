"""Prometheus metrics, read from the database at scrape time (so every process agrees).

A scrape reads small tables only (sources, connections, jobs, heartbeats, the status tallies
and the monotonic counters), never the dead-letter or attempt tables: it stays a few
milliseconds at a million dead letters (``make bench``, latency part, "metrics: scrape")."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from dlqadmin.models import (
    Connection,
    CounterName,
    HealthStatus,
    Heartbeat,
    RedriveJob,
    Source,
    StatusTally,
)
from dlqadmin.selectors_dashboard import harvester_replicas
from dlqadmin.services.counters import counter_totals
from dlqadmin.services.heartbeat import ALIVE_SECONDS


class DlqadminCollector:
    """One collector for everything; registered on a private registry by the /metrics view."""

    def collect(self):
        now = timezone.now()
        sources = list(Source.objects.select_related("connection"))
        harvested = CounterMetricFamily(
            "dlqadmin_dead_letters_harvested",
            "Dead letters harvested into the store.",
            labels=["source", "kind"],
        )
        backlog = GaugeMetricFamily(
            "dlqadmin_source_backlog",
            "Messages waiting on the broker to be harvested.",
            labels=["source", "kind"],
        )
        lag = GaugeMetricFamily(
            "dlqadmin_harvest_lag_seconds",
            "Seconds since the source was last harvested.",
            labels=["source", "kind"],
        )
        for s in sources:
            labels = [s.name, s.connection.kind]
            harvested.add_metric(labels, s.harvested_total)
            if s.backlog is not None:
                backlog.add_metric(labels, s.backlog)
            if s.last_harvest_at:
                lag.add_metric(labels, (now - s.last_harvest_at).total_seconds())
        yield from (harvested, backlog, lag)

        # Gauges of what is stored come from the tallies (a few hundred rows, kept by triggers),
        # never from the dead-letter table itself: a scrape costs the same at a million rows.
        by_status = GaugeMetricFamily(
            "dlqadmin_dead_letters", "Stored dead letters by status.", labels=["source", "status"]
        )
        names = {s.pk: s.name for s in sources}
        for row in StatusTally.objects.order_by().values("source_id", "status").annotate(n=Sum("n")):
            if row["source_id"] in names:
                by_status.add_metric([names[row["source_id"]], row["status"]], row["n"])
        yield by_status

        # Counters come from monotonic sources (models/counters.py): a purge never lowers them.
        totals = counter_totals()
        for name, metric, doc in (
            (CounterName.REDRIVEN, "dlqadmin_messages_redriven", "Messages redriven (broker-confirmed)."),
            (CounterName.REDRIVE_FAILED, "dlqadmin_messages_redrive_failed", "Redrive attempts that failed."),
            (
                CounterName.PURGED,
                "dlqadmin_dead_letters_purged",
                "Dead letters deleted by the retention purge.",
            ),
        ):
            family = CounterMetricFamily(metric, doc, labels=["source"])
            for s in sources:
                family.add_metric([s.name], totals.get((s.pk, name), 0))
            yield family

        jobs = GaugeMetricFamily("dlqadmin_redrive_jobs", "Redrive jobs by status.", labels=["status"])
        for row in RedriveJob.objects.order_by().values("status").annotate(n=Count("id")):
            jobs.add_metric([row["status"]], row["n"])
        yield jobs

        up = GaugeMetricFamily(
            "dlqadmin_broker_up",
            "1 when the connection's last recorded health was ok (see dlqadmin_broker_health_age_seconds).",
            labels=["connection", "kind"],
        )
        checked = GaugeMetricFamily(
            "dlqadmin_broker_last_check_timestamp_seconds",
            "Time of the last check.",
            labels=["connection", "kind"],
        )
        age = GaugeMetricFamily(
            "dlqadmin_broker_health_age_seconds",
            "Seconds since the connection's health was last recorded (harvester, redrive worker, "
            "beat check or a test).",
            labels=["connection", "kind", "checked_by"],
        )
        for c in Connection.objects.all():
            up.add_metric([c.name, c.kind], 1 if c.health_status == HealthStatus.OK else 0)
            if c.last_checked_at:
                checked.add_metric([c.name, c.kind], c.last_checked_at.timestamp())
                age.add_metric(
                    [c.name, c.kind, c.health_checked_by], (now - c.last_checked_at).total_seconds()
                )
        yield from (up, checked, age)

        alive = GaugeMetricFamily(
            "dlqadmin_component_up",
            f"Live instances of a component (heartbeat within {ALIVE_SECONDS}s).",
            labels=["component"],
        )
        seen = GaugeMetricFamily(
            "dlqadmin_component_last_seen_timestamp_seconds", "Newest heartbeat.", labels=["component"]
        )
        counts: dict[str, int] = {"harvester": 0, "worker": 0}
        newest: dict[str, float] = {}
        for hb in Heartbeat.objects.all():
            if (now - hb.last_seen).total_seconds() <= ALIVE_SECONDS:
                counts[hb.component] = counts.get(hb.component, 0) + 1
            newest[hb.component] = max(newest.get(hb.component, 0), hb.last_seen.timestamp())
        for component, n in counts.items():
            alive.add_metric([component], n)
        for component, ts in newest.items():
            seen.add_metric([component], ts)
        yield from (alive, seen)
        yield from _replica_metrics()


def _replica_metrics():
    """Each harvester replica (heartbeat within the last day): up, last beat, partitions held
    per source, last batch."""
    up = GaugeMetricFamily(
        "dlqadmin_harvester_replica_up",
        "1 while a harvester replica beats (within 15 s, no clean stop), 0 once it stopped.",
        labels=["instance"],
    )
    seen = GaugeMetricFamily(
        "dlqadmin_harvester_replica_last_seen_timestamp_seconds", "Last heartbeat.", labels=["instance"]
    )
    held = GaugeMetricFamily(
        "dlqadmin_harvester_replica_partitions_held",
        "Kafka partitions of a source's consumer group this replica holds.",
        labels=["instance", "source"],
    )
    batch = GaugeMetricFamily(
        "dlqadmin_harvester_replica_last_batch_timestamp_seconds",
        "When this replica last received dead letters.",
        labels=["instance"],
    )
    for replica in harvester_replicas():
        up.add_metric([replica.instance], 1 if replica.running else 0)
        seen.add_metric([replica.instance], replica.last_seen.timestamp())
        for source, partitions in replica.partitions.items():
            held.add_metric([replica.instance, source], len(partitions))
        if replica.last_batch.get("at"):
            batch.add_metric([replica.instance], datetime.fromisoformat(replica.last_batch["at"]).timestamp())
    yield from (up, seen, held, batch)
