"""Harvested dead letters, their edited revisions and the error groups they fall into."""

from django.conf import settings
from django.db import connections, models, transaction
from django.utils import timezone

from dlqadmin import partition_sql, search_sql

from .brokers import Source


class ErrorGroupStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"
    IGNORED = "ignored", "Ignored"


class ErrorGroup(models.Model):
    """Failures that share a fingerprint (exception class + normalised message + source)."""

    fingerprint = models.CharField(max_length=64, unique=True)
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="error_groups", null=True)
    error_class = models.CharField(max_length=500, blank=True)
    reason = models.CharField(max_length=100, blank=True)
    message_pattern = models.TextField(blank=True)
    sample_message = models.TextField(blank=True)
    count = models.BigIntegerField(default=0)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=ErrorGroupStatus.choices, default=ErrorGroupStatus.OPEN)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    auto_retry = models.BooleanField(
        null=True,
        blank=True,
        help_text="Override the source's automatic retry for this group (empty = inherit).",
    )

    class Meta:
        ordering = ["-last_seen"]
        indexes = [models.Index(fields=["status", "-last_seen"], name="errorgroup_status_seen")]

    def __str__(self) -> str:
        return f"{self.error_class or self.reason}: {self.message_pattern[:80]}"

    @property
    def dead_letters(self):
        """The group's dead letters (the foreign key is on their state row)."""
        return DeadLetter.objects.filter(error_group=self)


class DeadLetterStatus(models.TextChoices):
    NEW = "new", "New"
    QUEUED = "queued", "Queued for redrive"
    REDRIVEN = "redriven", "Redriven"
    FAILED = "failed", "Redrive failed"
    PARKED = "parked", "Parked (loop guard)"
    DISCARDED = "discarded", "Discarded"
    RESOLVED = "resolved", "Resolved"
    ARCHIVED = "archived", "Archived"


class DeadLetterState(models.Model):
    """What changes in a dead letter's life, and what the lists filter and sort on.

    A narrow row (no text longer than a reason, no payload): a status change rewrites this row and
    its few small b-tree indexes only, never the stored body (:class:`DeadLetter`, which extends
    it: Django's multi-table inheritance joins the two on ``id``, so ``DeadLetter`` queries read
    and filter these fields as its own). The dashboard tallies' triggers live on this table
    (``dlqadmin/tally_sql.py``). docs/architecture.md, "Storage".
    """

    # no single-column index on the foreign keys: the statestatus / statesource / stategroup
    # indexes start with them (each index costs every status change)
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, related_name="dead_letter_states", db_index=False
    )
    failed_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=DeadLetterStatus.choices, default=DeadLetterStatus.NEW)
    reason = models.CharField(max_length=100, blank=True)  # indexed by deadletter_reason (exact match only)
    redrive_count = models.PositiveIntegerField(default=0)
    last_redriven_at = models.DateTimeField(null=True, blank=True)
    error_group = models.ForeignKey(
        ErrorGroup,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="dead_letter_states",
        db_index=False,
    )

    class Meta:
        ordering = ["-failed_at", "-id"]
        indexes = [
            models.Index(fields=["-failed_at", "-id"], name="deadletter_failed_at"),
            models.Index(fields=["status", "-failed_at", "-id"], name="deadletter_status"),
            models.Index(fields=["source", "-failed_at", "-id"], name="deadletter_source"),
            models.Index(fields=["error_group", "-failed_at", "-id"], name="deadletter_group"),
            models.Index(fields=["reason"], name="deadletter_reason"),
            models.Index(fields=["error_group", "status"], include=["id"], name="deadletter_group_status"),
        ]

    def __str__(self) -> str:
        return f"dead letter {self.pk} ({self.status})"


class DeadLetter(DeadLetterState):
    """A harvested dead letter, stored losslessly and never changed: its body (payload, key,
    headers, properties, origin, error text). Its lifecycle is the parent row
    (:class:`DeadLetterState`, same ``id``).

    ``position`` identifies the message on the broker (RabbitMQ: queue + fingerprint; Kafka:
    cluster + topic + partition + offset; NATS: stream + seq or advisory id). It is UNIQUE per
    source through :class:`DeadLetterKey`, so harvesting the same message twice inserts nothing;
    ``source_key`` (the source's id again) and ``position`` are kept here for reading.

    The table is RANGE-partitioned on ``id`` (``dlqadmin/partition_sql.py``, migration 0020):
    retention drops whole partitions.
    """

    state_ptr = models.OneToOneField(
        DeadLetterState,
        on_delete=models.CASCADE,
        parent_link=True,
        primary_key=True,
        db_column="id",
        related_name="body",
    )
    source_key = models.BigIntegerField(editable=False)
    position = models.CharField(max_length=600)

    payload = models.BinaryField(default=b"")
    payload_available = models.BooleanField(default=True)
    read_notes = models.JSONField(
        default=list,
        blank=True,
        help_text='What the harvester could not read of this message ("could not read <field>: <why>").',
    )
    payload_size = models.PositiveBigIntegerField(default=0)
    key = models.BinaryField(null=True, blank=True)
    headers = models.JSONField(default=list, blank=True, help_text="Ordered [name, typed value] pairs.")
    properties = models.JSONField(default=dict, blank=True)

    origin_exchange = models.CharField(max_length=255, blank=True)
    origin_routing_key = models.CharField(max_length=255, blank=True)
    origin_queue = models.CharField(max_length=255, blank=True)
    origin_topic = models.CharField(max_length=255, blank=True)
    origin_partition = models.IntegerField(null=True, blank=True)
    origin_offset = models.BigIntegerField(null=True, blank=True)
    origin_stream = models.CharField(max_length=255, blank=True)
    origin_subject = models.CharField(max_length=500, blank=True)
    origin_seq = models.BigIntegerField(null=True, blank=True)
    origin_extra = models.JSONField(default=dict, blank=True)

    error_class = models.CharField(max_length=500, blank=True)
    error_message = models.TextField(blank=True)
    stacktrace = models.TextField(blank=True)

    harvested_at = models.DateTimeField(default=timezone.now)
    retry_count = models.PositiveIntegerField(default=0, help_text="x-retry-count seen on the message.")

    class Meta:
        ordering = ["-failed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.position}"

    def save(self, *args, **kwargs):
        """An ORM save (tests, tools; the harvest writes in bulk) keeps the harvest's invariants:
        a partition ready for its id; the source id in ``source_key``; its key row (a position
        stored before raises ``IntegrityError``); the new row searchable (indexed at once)."""
        self.source_key = self.source_id
        adding = self._state.adding
        alias = self._state.db or kwargs.get("using") or "default"
        if adding:
            partitions_ahead(alias)
        super().save(*args, **kwargs)
        if adding:
            DeadLetterKey.objects.using(alias).create(
                dead_letter_id=self.pk, source_key=self.source_key, position=self.position
            )
            with connections[alias].cursor() as cursor:
                cursor.execute(search_sql.INDEX_ONE, [self.pk])

    @property
    def original_destination(self) -> str:
        return self.origin_queue or self.origin_topic or self.origin_subject or ""


class DeadLetterKey(models.Model):
    """A stored dead letter's place on its broker: UNIQUE (source, position), the harvest's
    dedupe. Narrow and insert-only, one global index for every partition of the bodies (a unique
    index on the partitioned body would have to include ``id``). The store inserts the key first
    and the rest only for the keys that went in (``services/harvest/store.py``)."""

    dead_letter = models.OneToOneField(
        DeadLetterState, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    source_key = models.BigIntegerField()
    position = models.CharField(max_length=600)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source_key", "position"], name="deadletterkey_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.source_key}:{self.position}"


def partitions_ensure_now(alias: str = "default", *, ahead: int = 0) -> list[str]:
    """Create dead-letter partitions until a spare one lies beyond the ids handed out
    (and ``ahead`` more ids: ``partition_sql.ensure``, under its advisory lock); returns the names
    created."""
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        created, spare_from = partition_sql.ensure(cursor, settings.DLQADMIN_PARTITION_SIZE, ahead=ahead)
    if created:  # counted on once committed (a partition rolled back must not be)
        transaction.on_commit(lambda: _spare_from.__setitem__(alias, spare_from), using=alias)
    else:
        _spare_from[alias] = spare_from
    return created


def partitions_ahead(alias: str = "default", *, last: int | None = None) -> None:
    """Cheap unless needed: run :func:`partitions_ensure_now` when ``last`` (the highest id just
    stored; by default the sequence's next) reaches the highest partition, which leaves no spare.
    The highest partition's bound is remembered per process (read from the catalog once)."""
    with connections[alias].cursor() as cursor:
        if alias not in _spare_from:
            found = partition_sql.partitions(cursor)
            _spare_from[alias] = found[-1].lower if found and found[-1].lower is not None else 0
        if last is None:
            last = partition_sql.last_id(cursor) + 1
    if last >= _spare_from[alias]:
        partitions_ensure_now(alias)


#: per database: the lower bound of the highest partition, as last read or ensured (and committed)
_spare_from: dict[str, int] = {}


class DeadLetterSearch(models.Model):
    """The free-text index of one dead letter: its error text and a bounded prefix of its payload
    (``SEARCH_PAYLOAD_BYTES``), written in bulk shortly after the store
    (``dlqadmin.services.search``), never on the harvest path. Trigram GIN indexes of migration
    0016 answer ``q``; a dead letter not indexed yet is still in :class:`SearchBacklog`, which the
    search reads too, so a search never misses a stored message."""

    dead_letter = models.OneToOneField(
        DeadLetter, on_delete=models.CASCADE, primary_key=True, related_name="+", db_constraint=False
    )
    source_id = models.BigIntegerField()  # for the masking rules' per-source conditions
    error_class = models.CharField(max_length=500, blank=True)
    error_text = models.TextField(blank=True, help_text="The error message (a prefix).")
    payload_text = models.TextField(blank=True, help_text="The payload prefix, escape-encoded.")
    #: ``payload_text`` is the decoded payload's text (compressed, binary or a schema's record)
    decoded = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"search text of dead letter {self.dead_letter_id}"


class SearchBacklog(models.Model):
    """Dead letters stored but not yet in :class:`DeadLetterSearch` (one narrow row each)."""

    dead_letter = models.OneToOneField(
        DeadLetter, on_delete=models.CASCADE, primary_key=True, related_name="+", db_constraint=False
    )

    def __str__(self) -> str:
        return f"dead letter {self.dead_letter_id} awaiting its search index"


class DeadLetterRevision(models.Model):
    """An operator's edit of a dead letter's payload/headers. The original row never changes."""

    dead_letter = models.ForeignKey(DeadLetter, on_delete=models.CASCADE, related_name="revisions")
    payload = models.BinaryField()
    key = models.BinaryField(null=True, blank=True)
    headers = models.JSONField(default=list, blank=True)
    note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = ["created_at", "id"]

    def __str__(self) -> str:
        return f"revision {self.pk} of dead letter {self.dead_letter_id}"
