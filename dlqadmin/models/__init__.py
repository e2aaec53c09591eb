"""Domain models, one module per area; everything is importable from ``dlqadmin.models``."""

from .alerts import AlertChannel, AlertDelivery, AlertDeliveryStatus, AlertKind, AlertRule
from .brokers import BrokerKind, Connection, HealthStatus, Source, SourceMode
from .counters import CounterName, SourceCounter
from .dead_letters import (
    DeadLetter,
    DeadLetterKey,
    DeadLetterRevision,
    DeadLetterSearch,
    DeadLetterState,
    DeadLetterStatus,
    ErrorGroup,
    ErrorGroupStatus,
    SearchBacklog,
)
from .lookups import Any  # noqa: F401 - registers field__any
from .masking import MaskingKind, MaskingRule
from .operations import HARVESTER_BEAT_SECONDS, SILENT_SECONDS, ApiToken, AuditEvent, Heartbeat
from .redrive import (
    ACTIVE_JOB_STATUSES,
    RUNNABLE_JOB_STATUSES,
    RedriveAttempt,
    RedriveAttemptStatus,
    RedriveJob,
    RedriveJobStatus,
)
from .schemas import SchemaKind, StoredSchema
from .tallies import FailureTally, GroupDayTally, GroupStatusTally, StatusTally

__all__ = [
    "ACTIVE_JOB_STATUSES",
    "RUNNABLE_JOB_STATUSES",
    "AlertChannel",
    "AlertDelivery",
    "AlertDeliveryStatus",
    "AlertKind",
    "AlertRule",
    "ApiToken",
    "AuditEvent",
    "BrokerKind",
    "Connection",
    "CounterName",
    "DeadLetter",
    "DeadLetterKey",
    "DeadLetterRevision",
    "DeadLetterSearch",
    "DeadLetterState",
    "DeadLetterStatus",
    "ErrorGroup",
    "ErrorGroupStatus",
    "FailureTally",
    "GroupDayTally",
    "GroupStatusTally",
    "HealthStatus",
    "MaskingKind",
    "MaskingRule",
    "HARVESTER_BEAT_SECONDS",
    "Heartbeat",
    "SILENT_SECONDS",
    "RedriveAttempt",
    "RedriveAttemptStatus",
    "RedriveJob",
    "RedriveJobStatus",
    "SchemaKind",
    "SearchBacklog",
    "Source",
    "SourceCounter",
    "SourceMode",
    "StatusTally",
    "StoredSchema",
]
