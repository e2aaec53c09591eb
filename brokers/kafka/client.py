"""librdkafka configuration, metadata look-ups and error classification shared by the adapter.

Everything here is blocking (confluent-kafka is); the adapter calls it through
``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from brokers.base import BrokerError, ConnectionConfig

log = logging.getLogger("brokers.kafka")
#: librdkafka's own log lines (connection failures are logged on every reconnect attempt).
librdkafka_log = logging.getLogger("brokers.kafka.librdkafka")

#: the harvest cursor lives in this consumer group unless the source names its own.
DEFAULT_GROUP = "dlqadmin-harvester"

#: retrying the same call cannot help: the topic is missing, access is refused, the record is
#: refused as too large or malformed, or the configuration is wrong.
PERMANENT_CODES = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.POLICY_VIOLATION,
        KafkaError.INVALID_CONFIG,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.INVALID_GROUP_ID,
        KafkaError.INVALID_REQUIRED_ACKS,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        KafkaError._INVALID_ARG,
    }
)
MISSING_TOPIC_CODES = frozenset(
    {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}
)
#: a group-less commit (generation -1) is refused while the group has live members.
ACTIVE_GROUP_CODES = frozenset(
    {KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS}
)


def is_permanent(err: KafkaError) -> bool:
    return err.code() in PERMANENT_CODES


def kafka_error_of(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def describe(err: KafkaError) -> str:
    return f"{err.str()} [{err.name()}]"


def broker_error(exc: BaseException, what: str) -> BrokerError:
    """Wrap a confluent-kafka exception: transport failures and timeouts are transient."""
    err = kafka_error_of(exc)
    if err is None:
        return BrokerError(f"{what}: {exc}", permanent=False)
    return BrokerError(f"{what}: {describe(err)}", permanent=is_permanent(err))


class ErrorLog:
    """``error_cb`` target: librdkafka reports connection trouble (all brokers down, SASL or TLS
    failures) here rather than raising, so the caller checks it when progress stalls."""

    def __init__(self) -> None:
        self.last: KafkaError | None = None

    def __call__(self, err: KafkaError) -> None:
        self.last = err
        log.debug("librdkafka: %s", describe(err))


def bootstrap_servers(url: str) -> str:
    """``host:port[,host:port]``, tolerating ``kafka://`` style prefixes and trailing slashes."""
    servers = []
    for item in url.split(","):
        item = item.strip()
        if "://" in item:
            item = item.split("://", 1)[1]
        item = item.strip("/")
        if item:
            servers.append(item)
    if not servers:
        raise BrokerError("the Kafka connection has no bootstrap servers", permanent=True)
    return ",".join(servers)


def client_config(config: ConnectionConfig, errors: ErrorLog, **required: Any) -> dict[str, Any]:
    """librdkafka settings for one client.

    Order: our defaults, then ``options["client"]`` (any librdkafka setting, so operators can
    tune what we did not foresee), then ``required``: what this client's correctness depends on
    (e.g. manual commits) and so cannot be overridden.
    """
    opts = config.options
    timeout_ms = max(1000, int(config.timeout * 1000))
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers(config.url),
        "client.id": opts.get("client_id", "dlqadmin"),
        "socket.connection.setup.timeout.ms": timeout_ms,
        # A typo in a topic name must not create the topic (brokers default to auto-create).
        "allow.auto.create.topics": False,
        "logger": librdkafka_log,
    }
    security = opts.get("security_protocol")
    if not security:
        security = ("SASL_" if config.username else "") + ("SSL" if config.tls.enabled else "PLAINTEXT")
    conf["security.protocol"] = security
    if config.username:
        conf["sasl.mechanism"] = opts.get("sasl_mechanism", "PLAIN")
        conf["sasl.username"] = config.username
        conf["sasl.password"] = config.password
    if config.tls.enabled or "SSL" in security.upper():
        # PEM strings go straight to librdkafka: no key material is written to disk.
        if config.tls.ca_pem:
            conf["ssl.ca.pem"] = config.tls.ca_pem
        if config.tls.client_cert_pem:
            conf["ssl.certificate.pem"] = config.tls.client_cert_pem
        if config.tls.client_key_pem:
            conf["ssl.key.pem"] = config.tls.client_key_pem
        if not config.tls.verify:
            conf["enable.ssl.certificate.verification"] = False
            conf["ssl.endpoint.identification.algorithm"] = "none"
    conf.update(opts.get("client") or {})
    conf.update(required)
    conf["error_cb"] = errors
    return conf


def new_admin(config: ConnectionConfig, errors: ErrorLog) -> AdminClient:
    return AdminClient(client_config(config, errors))


def topic_partitions(client: Any, topic: str, timeout: float) -> tuple[str, list[int]]:
    """``(cluster_id, sorted partition ids)`` of an existing topic, from one Metadata request.

    Raises a permanent BrokerError when the topic does not exist and a transient one when the
    cluster does not answer within ``timeout``. (Asking for one topic is safe: every client is
    configured with ``allow.auto.create.topics=false``.)
    """
    try:
        md = client.list_topics(topic=topic, timeout=timeout)
    except KafkaException as exc:
        raise broker_error(exc, f"cannot read metadata of topic {topic!r}") from exc
    tm = md.topics.get(topic)
    if tm is None or (tm.error is not None and tm.error.code() in MISSING_TOPIC_CODES):
        raise BrokerError(f"Kafka topic {topic!r} does not exist on cluster {md.cluster_id}", permanent=True)
    if tm.error is not None:
        raise BrokerError(
            f"metadata of topic {topic!r}: {describe(tm.error)}", permanent=is_permanent(tm.error)
        )
    if not tm.partitions:
        raise BrokerError(f"Kafka topic {topic!r} has no partitions yet", permanent=False)
    return md.cluster_id or "", sorted(tm.partitions)


def list_offsets(
    admin: AdminClient, partitions: list[TopicPartition], spec: OffsetSpec, timeout: float
) -> dict[tuple[str, int], int]:
    """One ListOffsets request for many partitions: ``{(topic, partition): offset}``.

    Against tansu the *latest* offset is the last record batch's base offset + 1 (too low when
    the last batch holds several records); against Apache Kafka it is the true high watermark.
    """
    if not partitions:
        return {}
    try:
        futures = admin.list_offsets(
            {TopicPartition(tp.topic, tp.partition): spec for tp in partitions}, request_timeout=timeout
        )
        return {(tp.topic, tp.partition): fut.result().offset for tp, fut in futures.items()}
    except KafkaException as exc:
        raise broker_error(exc, "cannot list partition offsets") from exc
