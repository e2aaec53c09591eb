"""Finding dead-letter queues through the RabbitMQ management HTTP API (AMQP cannot list queues).

A queue is a candidate when it is where some queue's dead letters go (the queue's
``x-dead-letter-exchange`` argument, or its effective policy's ``dead-letter-exchange``, followed
through exchange bindings, including exchange-to-exchange ones), or when its name looks like a DLQ.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from yarl import URL

from brokers.base import ConnectionConfig

from .connection import DEFAULT_PASSWORD, DEFAULT_USERNAME, ssl_context, uses_tls, vhost_of

#: lower-case name fragments that suggest a dead-letter / parking queue.
NAME_HINTS = ("dlq", "dlx", "dead", "error", "parking")


class ManagementUnavailable(Exception):
    """The management API could not be queried (not enabled, unreachable, refused)."""


@dataclass
class Candidate:
    queue: str
    reason: str
    messages: int | None


def management_base(config: ConnectionConfig) -> str:
    """``options["management_url"]``, else http(s)://<amqp host>:15672 (15671 under TLS)."""
    explicit = (config.options or {}).get("management_url")
    if explicit:
        return str(explicit).rstrip("/")
    host = URL(config.url).host
    return f"https://{host}:15671" if uses_tls(config) else f"http://{host}:15672"


def _get_json(config: ConnectionConfig, path: str) -> Any:
    """Blocking GET of one API path (run it in a thread)."""
    url = management_base(config) + path
    if not url.startswith(("http://", "https://")):
        raise ManagementUnavailable(f"management_url must be http(s): {url!r}")
    user = config.username or DEFAULT_USERNAME
    password = config.password if config.username else DEFAULT_PASSWORD
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, headers={"Authorization": f"Basic {token}", "Accept": "application/json"}
    )
    context = ssl_context(config.tls) if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(request, timeout=config.timeout, context=context) as response:  # noqa: S310
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise ManagementUnavailable(f"management API {path}: HTTP {exc.code} {exc.reason}") from exc
    except (OSError, ValueError) as exc:  # URLError, timeouts, TLS errors, bad JSON
        raise ManagementUnavailable(f"management API {path}: {exc}") from exc


def _reachable_queues(exchange: str, bindings: list[dict], limit: int = 32) -> set[str]:
    """Queues bound to ``exchange``, directly or through exchange-to-exchange bindings."""
    seen, frontier, queues = {exchange}, [exchange], set()
    while frontier and len(seen) <= limit:
        source = frontier.pop()
        for b in bindings:
            if b.get("source") != source:
                continue
            dest = b.get("destination", "")
            if b.get("destination_type") == "queue":
                queues.add(dest)
            elif dest not in seen:
                seen.add(dest)
                frontier.append(dest)
    return queues


def find_dead_letter_queues(config: ConnectionConfig) -> list[Candidate]:
    """Blocking: candidate DLQs in the connection's vhost. Raises ManagementUnavailable."""
    vhost = quote(vhost_of(config), safe="")
    queues = _get_json(
        config, f"/api/queues/{vhost}?columns=name,arguments,effective_policy_definition,messages"
    )
    bindings = _get_json(config, f"/api/bindings/{vhost}?columns=source,destination,destination_type")
    if not isinstance(queues, list) or not isinstance(bindings, list):
        raise ManagementUnavailable("management API returned an unexpected document")

    reasons: dict[str, str] = {}
    for q in queues:
        name = q.get("name", "")
        args = q.get("arguments") or {}
        policy = q.get("effective_policy_definition")
        policy = policy if isinstance(policy, dict) else {}  # the API sends [] when there is none
        if "x-dead-letter-exchange" in args:
            dlx, dlrk, how = args["x-dead-letter-exchange"], args.get("x-dead-letter-routing-key"), "argument"
        elif "dead-letter-exchange" in policy:
            dlx, dlrk, how = policy["dead-letter-exchange"], policy.get("dead-letter-routing-key"), "policy"
        else:
            continue
        if dlx == "":
            # the default exchange routes by queue name: only the dead-letter routing key names a target
            if dlrk:
                reasons.setdefault(
                    dlrk, f"dead-letter routing key of queue {name!r} ({how}, default exchange)"
                )
            continue
        for target in _reachable_queues(dlx, bindings):
            reasons.setdefault(target, f"bound to dead-letter exchange {dlx!r} of queue {name!r} ({how})")

    messages = {q.get("name", ""): q.get("messages") for q in queues}
    for name in messages:
        if name in reasons or name.startswith("amq.gen-"):
            continue
        hint = next((h for h in NAME_HINTS if h in name.lower()), None)
        if hint:
            reasons[name] = f"name contains {hint!r}"
    return [
        Candidate(queue=name, reason=reason, messages=messages.get(name))
        for name, reason in sorted(reasons.items())
        if name in messages  # a dead-letter routing key may name a queue that does not exist
    ]
