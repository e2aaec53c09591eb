"""Broker connections and the dead-letter locations (sources) harvested from them."""

from django.conf import settings
from django.db import models

from dlqadmin import crypto


class BrokerKind(models.TextChoices):
    RABBITMQ = "rabbitmq", "RabbitMQ"
    KAFKA = "kafka", "Kafka"
    NATS = "nats", "NATS JetStream"


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    OK = "ok", "Healthy"
    ERROR = "error", "Unreachable"


class Connection(models.Model):
    """One broker endpoint. Credentials are stored encrypted and never rendered back."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=BrokerKind.choices)
    url = models.CharField(
        max_length=1000,
        help_text="amqp://host:5672/vhost, Kafka bootstrap servers host:9092[,host:9092], "
        "or nats://host:4222[,nats://...]. Put credentials in the fields below, not in the URL.",
    )
    username = models.CharField(max_length=200, blank=True)
    password_encrypted = models.TextField(blank=True, editable=False)
    options = models.JSONField(
        default=dict, blank=True, help_text="Kind-specific client options (e.g. Kafka sasl_mechanism)."
    )
    tls_enabled = models.BooleanField(default=False)
    tls_verify = models.BooleanField(default=True)
    tls_ca_cert = models.TextField(blank=True, help_text="PEM CA bundle (public; not secret).")
    tls_client_cert = models.TextField(blank=True, help_text="PEM client certificate.")
    tls_client_key_encrypted = models.TextField(blank=True, editable=False)
    # A Confluent-compatible Schema Registry: payloads in its wire format (magic byte 0 + schema
    # id) are decoded with the schema it holds (dlqadmin/decoding, services/schemas.py)
    schema_registry_url = models.CharField(
        max_length=1000,
        blank=True,
        help_text="Schema Registry for Confluent wire-format payloads (Avro, Protobuf, JSON Schema), "
        "e.g. http://registry:8081. Empty: none.",
    )
    schema_registry_username = models.CharField(
        max_length=200, blank=True, help_text="Basic-auth user (empty: the secret is a bearer token)."
    )
    schema_registry_secret_encrypted = models.TextField(blank=True, editable=False)

    health_status = models.CharField(
        max_length=16, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN
    )
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    health_checked_by = models.CharField(
        max_length=32,
        blank=True,
        editable=False,
        help_text="Who saw the health last: harvester, redrive worker, beat check, test connection.",
    )
    server_version = models.CharField(max_length=100, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def password(self) -> str:
        return crypto.decrypt(self.password_encrypted)

    def set_password(self, raw: str) -> None:
        self.password_encrypted = crypto.encrypt(raw)

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    @property
    def tls_client_key(self) -> str:
        return crypto.decrypt(self.tls_client_key_encrypted)

    def set_tls_client_key(self, raw: str) -> None:
        self.tls_client_key_encrypted = crypto.encrypt(raw)

    @property
    def schema_registry_secret(self) -> str:
        return crypto.decrypt(self.schema_registry_secret_encrypted)

    def set_schema_registry_secret(self, raw: str) -> None:
        self.schema_registry_secret_encrypted = crypto.encrypt(raw)


class SourceMode(models.TextChoices):
    QUEUE = "queue", "RabbitMQ dead-letter queue"
    TOPIC = "topic", "Kafka dead-letter topic"
    ADVISORY = "advisory", "NATS JetStream max-deliveries / terminated advisories"
    DLQ_STREAM = "dlq_stream", "NATS JetStream application DLQ stream"
    SUBJECT = "subject", "Core NATS DLQ subject (live only)"


class Source(models.Model):
    """One dead-letter location on a connection."""

    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="sources")
    name = models.CharField(max_length=100, unique=True)
    mode = models.CharField(
        max_length=16,
        choices=SourceMode.choices,
        help_text="NATS advisories: saving the source (enabled) creates a capture stream "
        "DLQADMIN_ADV_<stream> for the stream's max-deliveries and terminated advisories, or reads "
        "from a stream of yours that already captures them. NATS sends advisories only to "
        "listeners: failures from before the capture existed are lost and cannot be harvested.",
    )
    address = models.CharField(
        max_length=500, help_text="Queue name, topic name, stream name (advisory / DLQ stream) or subject."
    )
    options = models.JSONField(default=dict, blank=True, help_text="Kind-specific harvest options.")
    enabled = models.BooleanField(default=True)
    remove_after_harvest = models.BooleanField(
        default=True,
        help_text="Remove the broker copy once stored (RabbitMQ ack / NATS ack). Kafka always keeps it.",
    )
    max_redrives = models.PositiveIntegerField(
        default=5, help_text="Loop guard: a message redriven this many times is parked."
    )
    cursor = models.JSONField(default=dict, blank=True, help_text="Adapter-owned harvest position.")
    auto_retry = models.BooleanField(
        default=False,
        help_text="Redrive new failures automatically after a backoff, up to the attempt limit.",
    )
    auto_retry_max_attempts = models.PositiveIntegerField(default=3)
    auto_retry_backoff_seconds = models.PositiveIntegerField(
        default=60, help_text="Wait before the first automatic retry; doubles for each later attempt."
    )
    auto_retry_held = models.PositiveIntegerField(
        default=0,
        help_text="Due messages the automatic retry does not send because no origin is recorded: "
        "they need a destination (redrive them with a destination override).",
    )

    harvested_total = models.BigIntegerField(default=0)
    backlog = models.BigIntegerField(null=True, blank=True)
    last_harvest_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    # What the adapter's prepare() set up on the broker (modes with Capability.PREPARE, e.g. the
    # NATS advisory capture stream); written only by services/harvest/prepare.py.
    prepared_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the broker was last set up for this source."
    )
    prepare_error = models.TextField(
        blank=True, editable=False, help_text="Why the broker could not be set up for this source."
    )
    prepare_note = models.TextField(
        blank=True, editable=False, help_text="Where the broker captures this source's failures."
    )
    prepared_options = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="Harvest options prepare() found (e.g. the capture stream to read); "
        "the source's own options override them.",
    )

    allowed_groups = models.ManyToManyField(
        "auth.Group",
        blank=True,
        related_name="+",
        help_text="Restrict to these groups (and the users below). Empty for both = everyone may see it.",
    )
    allowed_users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "mode", "address"], name="source_unique_location"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def dead_letters(self):
        """This source's dead letters (the foreign key is on their state row)."""
        from .dead_letters import DeadLetter

        return DeadLetter.objects.filter(source=self)
