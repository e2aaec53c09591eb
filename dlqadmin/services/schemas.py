"""Schemas for decoding: a connection's Schema Registry (Confluent wire format), cached by id,
and the schema store (schemas uploaded into dlqadmin and bound to sources: their writes here).

``registry_lookup(connection)`` gives the ``SchemaLookup`` that ``dlqadmin.decoding`` calls with
a record's schema id. A registered schema never changes under its id, so each one found (with its
references) is kept in a process-wide LRU keyed by registry URL and id; a failure (unknown id,
registry unreachable) is remembered for ``FAILURE_TTL`` seconds, then asked again. The registry
side only reads; the store's writes are ``stored_schema_save`` / ``stored_schema_delete``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from django.core.exceptions import ValidationError
from django.db import transaction

from brokers.schema_registry import RegisteredSchema, RegistryClient, RegistryConfig, RegistryError
from dlqadmin import permissions
from dlqadmin.crypto import DecryptionError
from dlqadmin.decoding.confluent import KINDS, RecordError, Schema, SchemaLookup, SchemaUnavailable
from dlqadmin.decoding.proto_source import compile_proto_files
from dlqadmin.models import Connection, StoredSchema
from dlqadmin.services.audit import audit_record, audited_delete

CACHE_SIZE = 1024
MAX_REFERENCE_DEPTH = 16
#: seconds a failed lookup (unknown id, registry unreachable) is answered from memory
FAILURE_TTL = 10.0

_cache: OrderedDict[tuple, Schema] = OrderedDict()
_lock = threading.Lock()
_failures: dict[tuple, tuple[float, str]] = {}  # key -> (retry after, why); small: ids that failed


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
        _failures.clear()


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
            failed = _failures.get(key)
            if failed is not None and failed[0] > time.monotonic():
                raise SchemaUnavailable(failed[1])
            try:
                found = _by_id(client(), schema_id)
            except SchemaUnavailable as exc:
                # an unreachable registry would otherwise cost every page view its timeout
                if len(_failures) > 4096:  # bounded: hostile records can name any id
                    _failures.clear()
                _failures[key] = (time.monotonic() + FAILURE_TTL, str(exc))
                raise
            _failures.pop(key, None)
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
    label = subject = ""
    try:
        pairs = client.subject_versions(schema_id)
        if pairs:
            subject, label = pairs[0][0], f"{pairs[0][0]} v{pairs[0][1]}"
    except RegistryError:
        pass  # only the label (and a later version's edit) needs it
    return _resolved(client, registered, label=label, depth=0, subject=subject)


def registry_version(connection: Connection, subject: str, version: int) -> Schema:
    """Version ``version`` of ``subject`` in ``connection``'s registry (an edit re-encoded with a
    later version). Raises SchemaUnavailable (no registry, unknown subject 40401 or version 40402,
    unreachable)."""
    if not connection.schema_registry_url:
        raise SchemaUnavailable("the connection has no Schema Registry")
    key = (connection.schema_registry_url, "version", subject, version)
    found = _cached(key)
    if found is not None:
        return found
    try:
        client = RegistryClient(registry_config(connection))
        registered = client.version(subject, version)
        if registered.schema_type == "PROTOBUF":
            registered = client.version(subject, version, serialized=True)
    except DecryptionError as exc:
        raise SchemaUnavailable(f"the registry secret cannot be decrypted: {exc}") from None
    except RegistryError as exc:
        raise SchemaUnavailable(str(exc)) from None
    found = _resolved(client, registered, label=f"{subject} v{version}", depth=0, subject=subject)
    _keep(key, found)
    return found


def _resolved(
    client: RegistryClient, registered: RegisteredSchema, *, label: str, depth: int, subject: str = ""
) -> Schema:
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
        subject=registered.subject or subject,
    )


def _why(exc: RegistryError) -> str:
    if exc.code == 40403:
        return f"unknown schema id ({exc})"
    return str(exc)


# ---- the schema store ------------------------------------------------------------------------

STORED_SCHEMA_FIELDS = ("name", "kind", "definition", "message_type", "header", "header_value", "enabled")


def stored_schema_save(
    *,
    actor,
    schema: StoredSchema | None = None,
    sources=None,
    proto_files: dict[str, str] | None = None,
    remote_addr=None,
    **values,
) -> StoredSchema:
    """Upload (``schema=None``) or change a schema of the store; ``sources`` binds it (None leaves
    the bindings). ``proto_files`` (file name -> .proto text, a main file and its imports) is
    compiled into the Protobuf definition, a descriptor set. The definition must load (Avro
    parses, JSON Schema checks, the descriptor set defines ``message_type``). Admins only
    (``manage_connections``). Raises ValidationError, PermissionDenied."""
    permissions.require(actor, permissions.MANAGE_CONNECTIONS)
    schema = schema or StoredSchema()
    if proto_files is not None:
        kind = values.get("kind", schema.kind)
        values["definition"] = stored_schema_compile(kind=kind, proto_files=proto_files)
    creating = schema.pk is None
    changed = sorted(k for k in values if k in STORED_SCHEMA_FIELDS and getattr(schema, k, None) != values[k])
    for key in changed:
        setattr(schema, key, values[key])
    schema.full_clean()
    with transaction.atomic():
        schema.save()
        if sources is not None:
            schema.sources.set(sources)
            changed.append("sources")
        audit_record(
            actor=actor,
            action=f"schema.{'create' if creating else 'update'}",
            target=schema,
            detail={"name": schema.name, "kind": schema.kind, "changed": changed},
            remote_addr=remote_addr,
        )
    return schema


def stored_schema_compile(*, kind: str, proto_files: dict[str, str]) -> str:
    """The definition (a base64 descriptor set) of ``proto_files``, file name -> .proto text.
    Raises ValidationError on ``proto_files`` with protoc's messages (file:line:column)."""
    if kind != "protobuf":
        raise ValidationError({"proto_files": ".proto files are for kind protobuf"})
    try:
        return compile_proto_files(proto_files)
    except RecordError as exc:
        raise ValidationError({"proto_files": str(exc)}) from None


def stored_schema_delete(*, actor, schema: StoredSchema, remote_addr=None) -> None:
    permissions.require(actor, permissions.MANAGE_CONNECTIONS)
    audited_delete(
        schema, actor=actor, action="schema.delete", detail={"name": schema.name}, remote_addr=remote_addr
    )


def stored_schema_for(source_id: int, header_value_of) -> Schema | None:
    """The stored schema bound to ``source_id`` for a message: one whose header condition the
    message meets (``header_value_of(name)`` gives its value), else one without a condition.
    None when none is bound (or the bound one no longer loads: decoding then shows the bytes)."""
    bound = list(StoredSchema.objects.filter(enabled=True, sources__id=source_id).order_by("name"))
    chosen = next((s for s in bound if s.header and header_value_of(s.header) == s.header_value), None)
    chosen = chosen or next((s for s in bound if not s.header), None)
    if chosen is None:
        return None
    key = ("stored", chosen.pk, chosen.updated_at)
    found = _cached(key)
    if found is None:
        try:
            found = chosen.as_schema()
        except RecordError:
            return None
        _keep(key, found)
    return found
