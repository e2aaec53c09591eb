"""Monotonic per-source counters for /metrics (``dlqadmin_*_total``).

The dead-letter table and its tallies count what is stored *now*: a retention purge lowers them.
A Prometheus counter must never go down, so what happened to messages (redriven, redrive
failed, purged) is counted here when it happens, and nothing ever subtracts. Harvested messages
are counted on ``Source.harvested_total`` by the harvest store.

Like the dashboard tallies, writers only append delta rows (no writer waits on a counter row);
``services/counters.py::counters_fold`` folds them into one base row per (source, name) now and
then. Source ids are plain integers: a counter outlives nothing, but needs no lookup to write.
"""

from django.db import models

from .tallies import Tally, base_row


class CounterName(models.TextChoices):
    REDRIVEN = "redriven", "Messages redriven (broker-confirmed)"
    REDRIVE_FAILED = "redrive_failed", "Redrive attempts that failed"
    PURGED = "purged", "Dead letters deleted by the retention purge"


class SourceCounter(Tally):
    """One delta (or the base row) of a monotonic counter of a source; ``n`` is never negative."""

    source_id = models.BigIntegerField()
    name = models.CharField(max_length=32, choices=CounterName.choices)

    class Meta:
        constraints = [base_row("source_id", "name", name="sourcecounter_base")]

    def __str__(self) -> str:
        return f"source {self.source_id} {self.name}: {self.n:+d}"
