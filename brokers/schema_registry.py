"""A client for a Confluent-compatible Schema Registry: the two reads decoding needs.

``GET /schemas/ids/{id}`` (the schema a wire-format record names) and
``GET /subjects/{subject}/versions/{version}`` (its references), and
``GET /schemas/ids/{id}/versions`` (which subject and version it is, for people). Protobuf
schemas are asked for with ``format=serialized`` (a base64 FileDescriptorProto, which needs no
.proto compiler). The registry's errors keep their ``error_code`` (40403 schema not found,
40401 subject not found, 40402 version not found, 401/403 refused ...). Blocking (``urllib``),
with a timeout; callers cache (schemas are immutable per id). Imports nothing of dlqadmin, reads no settings.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

#: largest registry answer read (a schema is text; this bounds a misbehaving server)
MAX_ANSWER = 4 * 1024 * 1024


@dataclass(frozen=True)
class RegistryConfig:
    url: str
    username: str = ""
    secret: str = field(default="", repr=False)  # basic-auth password, or a bearer token
    timeout: float = 5.0

    def __repr__(self) -> str:
        shown = "***" if self.secret else ""
        return f"RegistryConfig(url={self.url!r}, username={self.username!r}, secret={shown!r})"


@dataclass(frozen=True)
class Reference:
    name: str  # the import path (Protobuf) or full name (Avro) the schema uses
    subject: str
    version: int


@dataclass(frozen=True)
class RegisteredSchema:
    schema_type: str  # AVRO, PROTOBUF or JSON
    schema: str
    references: tuple[Reference, ...] = ()
    subject: str = ""
    version: int | None = None
    id: int | None = None


class RegistryError(Exception):
    """The registry refused (``code`` is its error_code, e.g. 40403) or could not be reached
    (``unreachable``)."""

    def __init__(self, message: str, *, code: int | None = None, unreachable: bool = False):
        super().__init__(message)
        self.code = code
        self.unreachable = unreachable


class RegistryClient:
    def __init__(self, config: RegistryConfig):
        self.config = config

    def schema_by_id(self, schema_id: int, *, serialized: bool = False) -> RegisteredSchema:
        query = "?format=serialized" if serialized else ""
        answer = self._get(f"/schemas/ids/{int(schema_id)}{query}")
        return _registered(answer, schema_id=schema_id)

    def subject_versions(self, schema_id: int) -> list[tuple[str, int]]:
        """``(subject, version)`` pairs registered with ``schema_id`` (``/schemas/ids/{id}/versions``)."""
        request = self._get_any(f"/schemas/ids/{int(schema_id)}/versions")
        pairs = []
        for item in request if isinstance(request, list) else []:
            if isinstance(item, dict) and isinstance(item.get("version"), int):
                pairs.append((str(item.get("subject") or ""), item["version"]))
        return pairs

    def version(self, subject: str, version: int | str, *, serialized: bool = False) -> RegisteredSchema:
        path = f"/subjects/{urllib.parse.quote(subject, safe='')}/versions/{urllib.parse.quote(str(version))}"
        answer = self._get(path + ("?format=serialized" if serialized else ""))
        return _registered(answer)

    def _get(self, path: str) -> dict:
        answer = self._get_any(path)
        if not isinstance(answer, dict):
            raise RegistryError("registry answer is not a JSON object")
        return answer

    def _get_any(self, path: str):
        if urllib.parse.urlsplit(self.config.url).scheme not in ("http", "https"):
            raise RegistryError("a Schema Registry URL is http:// or https://")
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
            self.config.url.rstrip("/") + path,
            headers={"Accept": "application/vnd.schemaregistry.v1+json, application/json"},
        )
        if self.config.username:
            pair = f"{self.config.username}:{self.config.secret}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode("ascii"))
        elif self.config.secret:
            request.add_header("Authorization", f"Bearer {self.config.secret}")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout) as response:  # noqa: S310 - http(s)
                body = response.read(MAX_ANSWER + 1)
        except urllib.error.HTTPError as exc:
            raise _refusal(exc) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryError(f"registry unreachable: {reason}", unreachable=True) from None
        if len(body) > MAX_ANSWER:
            raise RegistryError(f"registry answer larger than {MAX_ANSWER} bytes")
        try:
            return json.loads(body)
        except ValueError:
            raise RegistryError("registry answer is not JSON") from None


def _refusal(exc: urllib.error.HTTPError) -> RegistryError:
    try:
        answer = json.loads(exc.read(65536) or b"{}")
    except (ValueError, OSError):
        answer = {}
    code = answer.get("error_code") if isinstance(answer, dict) else None
    message = answer.get("message") if isinstance(answer, dict) else None
    code = code if isinstance(code, int) else exc.code
    return RegistryError(f"registry error {code}: {message or exc.reason}", code=code)


def _registered(answer: dict, *, schema_id: int | None = None) -> RegisteredSchema:
    schema = answer.get("schema")
    if not isinstance(schema, str):
        raise RegistryError("registry answer has no schema")
    refs = []
    for ref in answer.get("references") or []:
        try:
            refs.append(
                Reference(name=str(ref["name"]), subject=str(ref["subject"]), version=int(ref["version"]))
            )
        except (KeyError, TypeError, ValueError):
            raise RegistryError(f"registry answer has a malformed reference: {ref!r}") from None
    version = answer.get("version")
    return RegisteredSchema(
        schema_type=str(answer.get("schemaType") or "AVRO").upper(),
        schema=schema,
        references=tuple(refs),
        subject=str(answer.get("subject") or ""),
        version=version if isinstance(version, int) else None,
        id=answer.get("id") if isinstance(answer.get("id"), int) else schema_id,
    )
