"""Running totals of the dead-letter table for the dashboard (overview, error-group list).

At a million dead letters, counting per status, per source or per hour takes hundreds of
milliseconds however it is indexed. Statement-level triggers of migration 0009 keep these
tallies as the table changes (insert, update, delete, COPY), so the pages read a few hundred
small rows instead (``dlqadmin.selectors_dashboard``).

A trigger only ever appends *delta* rows (``delta=True``; ``n`` may be negative), so writers
never wait on each other for a counter row. A total is the sum of its key's base row and
deltas; ``dlqadmin_tally_compact()`` folds the deltas into the base rows now and then. Source and
group ids are plain integers, not foreign keys: no lookup on every insert, and a deleted row
appends a negative delta instead of needing its source or group to still exist.
"""

from django.db import models

# The triggers that keep these tables: SQL in dlqadmin/tally_sql.py, installed by migration 0009,
# re-created by 0021 for GroupStatusTally (docs/architecture.md, "Package map"). A change there
# needs a new migration for databases already migrated (tests/views/test_tallies.py pins the SQL).


class Tally(models.Model):
    """One row of a running total: a delta (``n`` may be negative) or its key's base row."""

    n = models.BigIntegerField()
    delta = models.BooleanField(default=True)

    class Meta:
        abstract = True


def base_row(*key: str, name: str) -> models.UniqueConstraint:
    """At most one base row per key (the row ``dlqadmin_tally_compact()`` folds deltas into)."""
    return models.UniqueConstraint(fields=list(key), condition=models.Q(delta=False), name=name)


class StatusTally(Tally):
    """Dead letters per (source, status)."""

    source_id = models.BigIntegerField()
    status = models.CharField(max_length=16)

    class Meta:
        constraints = [base_row("source_id", "status", name="statustally_base")]

    def __str__(self) -> str:
        return f"source {self.source_id} {self.status}: {self.n:+d}"


class FailureTally(Tally):
    """Dead letters per (source, hour of ``failed_at`` in UTC): the failures chart, last 24 h."""

    source_id = models.BigIntegerField()
    hour = models.DateTimeField()

    class Meta:
        constraints = [base_row("source_id", "hour", name="failuretally_base")]
        indexes = [models.Index(fields=["hour"], name="failuretally_hour")]

    def __str__(self) -> str:
        return f"source {self.source_id} {self.hour:%Y-%m-%d %H}h: {self.n:+d}"


class GroupDayTally(Tally):
    """Dead letters per (error group, UTC day of ``failed_at``): the groups' sparklines."""

    error_group_id = models.BigIntegerField()
    day = models.DateTimeField()

    class Meta:
        constraints = [base_row("error_group_id", "day", name="groupdaytally_base")]

    def __str__(self) -> str:
        return f"group {self.error_group_id} {self.day:%Y-%m-%d}: {self.n:+d}"


class GroupStatusTally(Tally):
    """Dead letters per (error group, status): the group page's counts (since migration 0021)."""

    error_group_id = models.BigIntegerField()
    status = models.CharField(max_length=16)

    class Meta:
        constraints = [base_row("error_group_id", "status", name="groupstatustally_base")]

    def __str__(self) -> str:
        return f"group {self.error_group_id} {self.status}: {self.n:+d}"
