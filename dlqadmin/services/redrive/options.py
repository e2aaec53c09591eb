"""The one definition of what a redrive may be asked for: velocity, batch size, the keys of a
destination override and of a header policy, and how many messages a selection may name by id.

Every surface takes its bounds and messages from here and keeps its own presentation: the
dashboard form (a form error), the API serializer (a 400), the Django admin (a message), the
``manage.py redrive`` command (a CommandError), and :func:`dlqadmin.services.redrive.jobs.redrive_job_create`
checks them once more for any other caller. Larger selections than :data:`MAX_SELECTION_IDS` go by
filter: a filter job is claimed in part by the request and the rest by the worker
(:mod:`dlqadmin.services.redrive.claim`).
"""

from __future__ import annotations

#: messages per second; omitted = as fast as the broker confirms
MIN_VELOCITY = 0.001
MAX_VELOCITY = 100_000
MAX_BATCH = 1000
#: messages per chunk unless the caller says otherwise: a chunk is the unit of pause / cancel and of
#: one publish window; 500 measured 1.2-1.7x the throughput of 100 (docs/benchmarks.md)
DEFAULT_BATCH = 500
DESTINATION_KEYS = frozenset(
    {"exchange", "routing_key", "use_original_route", "topic", "partition", "subject"}
)
POLICY_KEYS = frozenset({"copy_original", "strip", "keep_diagnostics", "extra", "spring_retry_count"})
#: most messages one request may name by id (dashboard ticks, API ``ids``, admin selection, CLI
#: ``--ids``); a job over ids is claimed whole by the request that creates it
MAX_SELECTION_IDS = 10_000

VELOCITY_MESSAGE = f"velocity must be a number of messages per second from {MIN_VELOCITY:g} to {MAX_VELOCITY}"
BATCH_MESSAGE = f"batch_size must be an integer from 1 to {MAX_BATCH}"
DESTINATION_MESSAGE = f"destination takes only: {', '.join(sorted(DESTINATION_KEYS))}"
POLICY_MESSAGE = f"header_policy takes only: {', '.join(sorted(POLICY_KEYS))}"


def ids_message(given: int) -> str:
    """Why a selection of ``given`` ids is refused (each surface may add how to select by filter)."""
    return f"at most {MAX_SELECTION_IDS} messages by id ({given} given); select more with a filter"


def velocity_problem(velocity) -> str | None:
    if velocity is None:
        return None
    ok = isinstance(velocity, int | float) and not isinstance(velocity, bool)
    return None if ok and MIN_VELOCITY <= velocity <= MAX_VELOCITY else VELOCITY_MESSAGE


def batch_size_problem(batch_size) -> str | None:
    ok = isinstance(batch_size, int) and not isinstance(batch_size, bool)
    return None if ok and 1 <= batch_size <= MAX_BATCH else BATCH_MESSAGE


def ids_problem(count: int) -> str | None:
    return ids_message(count) if count > MAX_SELECTION_IDS else None


def option_problems(
    *, destination=None, velocity=None, batch_size=DEFAULT_BATCH, header_policy=None
) -> dict[str, str]:
    """field -> message for every option out of bounds (empty: all fine)."""
    problems = {
        "destination": (
            DESTINATION_MESSAGE
            if destination and (not isinstance(destination, dict) or set(destination) - DESTINATION_KEYS)
            else None
        ),
        "velocity": velocity_problem(velocity),
        "batch_size": batch_size_problem(batch_size),
        "header_policy": (
            POLICY_MESSAGE
            if header_policy and (not isinstance(header_policy, dict) or set(header_policy) - POLICY_KEYS)
            else None
        ),
    }
    return {field: message for field, message in problems.items() if message}
