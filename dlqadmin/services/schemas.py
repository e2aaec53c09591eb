"""Schemas for decoding: a connection's Schema Registry (Confluent wire format), cached by id.

``registry_lookup(connection)`` gives the ``SchemaLookup`` that ``dlqadmin.decoding`` calls with
a record's schema id. A registered schema never changes under its id, so each one found (with its
references) is kept in a process-wide LRU keyed by registry URL and id; failures are not cached
(an unreachable registry is asked again on the next read). Read-only: no database writes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from brokers.schema_registry import RegisteredSchema, RegistryClient, RegistryConfig, RegistryError
from dlqadmin.crypto import DecryptionError
from dlqadmin.decoding.confluent import KINDS, Schema, SchemaLookup, SchemaUnavailable
from dlqadmin.models import Connection

CACHE_SIZE = 1024
MAX_REFERENCE_DEPTH = 16

_cache: OrderedDict[tuple, Schema] = OrderedDict()
_lock = threading.Lock()


def _cached(key: tuple) -> Schema | None:
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
        return found


def _keep(key: tuple, schema: Schema) -> None:
    with _lock:
        _cache[key] = schema
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)


def cache_clear() -> None:
    with _lock:
        _cache.clear()


def registry_config(connection: Connection, *, timeout: float = 5.0) -> RegistryConfig:
    """The registry settings of ``connection`` (its secret decrypted here, nowhere else)."""
    return RegistryConfig(
        url=connection.schema_registry_url,
        username=connection.schema_registry_username,
        secret=connection.schema_registry_secret,
        timeout=timeout,
    )


def registry_lookup(connection: Connection) -> SchemaLookup | None:
    """A schema lookup through ``connection``'s registry, or None when it has none."""
    if not connection.schema_registry_url:
        return None
    url = connection.schema_registry_url
    state: dict = {}

    def client() -> RegistryClient:
        if "client" not in state:
            try:
                state["client"] = RegistryClient(registry_config(connection))
            except DecryptionError as exc:
                raise SchemaUnavailable(f"the registry secret cannot be decrypted: {exc}") from None
        return state["client"]

    def lookup(schema_id: int) -> Schema:
        key = (url, "id", schema_id)
        found = _cached(key)
        if found is None:
            found = _by_id(client(), schema_id)
            _keep(key, found)
        return found

    return lookup


def _by_id(client: RegistryClient, schema_id: int) -> Schema:
    try:
        registered = client.schema_by_id(schema_id)
        if registered.schema_type == "PROTOBUF":
            registered = client.schema_by_id(schema_id, serialized=True)
    except RegistryError as exc:
        raise SchemaUnavailable(_why(exc)) from None
    label = ""
    try:
        pairs = client.subject_versions(schema_id)
        if pairs:
            label = f"{pairs[0][0]} v{pairs[0][1]}"
    except RegistryError:
        pass  # only the label needs it
    return _resolved(client, registered, label=label, depth=0)


def _resolved(client: RegistryClient, registered: RegisteredSchema, *, label: str, depth: int) -> Schema:
    kind = KINDS.get(registered.schema_type)
    if kind is None:
        raise SchemaUnavailable(f"unknown schema type {registered.schema_type}")
    if depth > MAX_REFERENCE_DEPTH:
        raise SchemaUnavailable(f"references nested deeper than {MAX_REFERENCE_DEPTH}")
    references: list[tuple[str, Schema]] = []
    for ref in registered.references:
        try:
            found = client.version(ref.subject, ref.version, serialized=kind == "protobuf")
        except RegistryError as exc:
            raise SchemaUnavailable(
                f"reference {ref.name} ({ref.subject} v{ref.version}): {_why(exc)}"
            ) from None
        child = _resolved(client, found, label=f"{ref.subject} v{ref.version}", depth=depth + 1)
        references.extend(child.references)  # dependencies first
        references.append((ref.name, Schema(kind=child.kind, text=child.text, label=child.label)))
    if registered.subject and registered.version is not None:
        label = f"{registered.subject} v{registered.version}"
    return Schema(
        kind=kind,
        text=registered.schema,
        references=tuple(references),
        label=label,
        schema_id=registered.id,
    )


def _why(exc: RegistryError) -> str:
    if exc.code == 40403:
        return f"unknown schema id ({exc})"
    return str(exc)
