"""One error shape for the whole API: ``{"error": "<message>", "fields": {"<path>": "<message>"}}``.

Domain errors raised by selectors and services (FilterError, RedriveError, EditError,
PermissionDenied, BrokerError) are mapped here, so views call services without try/except
boilerplate and a client always gets JSON with a clear message, never an HTML 500 page for bad
input. Status codes: 400 bad input, 401 no/invalid credentials, 403 role, 404, 405, 409 conflict
(state does not allow it, protected rows, message already in an active job), 415, 429, 502/503
when the broker failed (permanent / transient).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from brokers.base import BrokerError
from dlqadmin.selectors import FilterError
from dlqadmin.services.dead_letters import EditError
from dlqadmin.services.redrive.jobs import RedriveError

log = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error with an explicit status, message and field errors."""

    def __init__(self, message: str, *, status_code: int = 400, fields: dict | None = None, **extra):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.fields = fields or {}
        self.extra = extra


class Conflict(ApiError):
    def __init__(self, message: str, *, fields: dict | None = None):
        super().__init__(message, status_code=status.HTTP_409_CONFLICT, fields=fields)


def broker_failure(exc: BrokerError, doing: str) -> ApiError:
    """A broker call failed: 502 when retrying cannot help (permanent), else 503."""
    code = status.HTTP_502_BAD_GATEWAY if exc.permanent else status.HTTP_503_SERVICE_UNAVAILABLE
    return ApiError(f"{doing} failed: {exc}", status_code=code, permanent=exc.permanent)


@contextmanager
def broker_call(doing: str):
    """Around a call that reaches a broker: BrokerError -> 502/503. An adapter that breaks the
    contract (raises something else, e.g. ValueError for a URL it cannot parse) is logged as the
    bug it is and answered 502 too: the request named a connection the broker layer rejected."""
    try:
        yield
    except BrokerError as exc:
        raise broker_failure(exc, doing) from exc
    except (ValueError, TypeError, LookupError, OSError) as exc:
        log.exception("%s: the broker adapter raised %s instead of BrokerError", doing, type(exc).__name__)
        raise ApiError(
            f"{doing} failed: the connection settings were rejected ({exc})",
            status_code=status.HTTP_502_BAD_GATEWAY,
            permanent=True,
        ) from exc


def flatten(detail, prefix: str = "") -> dict[str, str]:
    """DRF's nested error detail -> ``{"a.b.0": "message; message"}``."""
    out: dict[str, str] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "" if key in ("non_field_errors", "__all__") else str(key)
            out.update(flatten(value, f"{prefix}.{name}" if prefix and name else prefix or name))
    elif isinstance(detail, list):
        if all(not isinstance(v, dict | list) for v in detail):
            if detail:
                out[prefix or "request"] = "; ".join(str(v) for v in detail)
        else:
            for i, value in enumerate(detail):
                if value:
                    out.update(flatten(value, f"{prefix}.{i}" if prefix else str(i)))
    elif detail is not None:
        out[prefix or "request"] = str(detail)
    return out


def _fields_message(fields: dict[str, str], default: str) -> str:
    if not fields:
        return default
    name, message = next(iter(fields.items()))
    more = f" (and {len(fields) - 1} more)" if len(fields) > 1 else ""
    return f"{message}{more}" if name == "request" else f"{name}: {message}{more}"


def _translate(exc: Exception) -> Exception:
    """Map domain and Django exceptions to ApiError / DRF exceptions."""
    if isinstance(exc, FilterError):
        return ApiError(_fields_message(exc.errors, "invalid filter"), fields=dict(exc.errors))
    if isinstance(exc, RedriveError):
        code = status.HTTP_409_CONFLICT if exc.conflict else status.HTTP_400_BAD_REQUEST
        return ApiError(
            _fields_message(exc.errors, "invalid redrive request"), status_code=code, fields=exc.errors
        )
    if isinstance(exc, EditError):
        return ApiError(_fields_message(exc.errors, "invalid edit"), fields=dict(exc.errors))
    if isinstance(exc, BrokerError):
        return broker_failure(exc, "the broker call")
    if isinstance(exc, ProtectedError | RestrictedError):
        return Conflict(f"cannot delete: other records still refer to it ({exc.args[0]})")
    if isinstance(exc, IntegrityError):
        return Conflict("the change conflicts with existing data (a unique name or location is taken)")
    if isinstance(exc, DjangoValidationError):
        fields = (
            {k: "; ".join(v) for k, v in exc.message_dict.items()}
            if hasattr(exc, "error_dict")
            else {"request": "; ".join(exc.messages)}
        )
        fields = {("request" if k == "__all__" else k): v for k, v in fields.items()}
        return ApiError(_fields_message(fields, "invalid request"), fields=fields)
    if isinstance(exc, Http404):
        return exceptions.NotFound("not found")
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc) or "your role does not allow this")
    return exc


def api_exception_handler(exc, context):
    """REST_FRAMEWORK["EXCEPTION_HANDLER"] for the dlqadmin API."""
    exc = _translate(exc)
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let Django log it and answer 500
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc, ApiError):
        body = {"error": exc.message, "fields": exc.fields, **exc.extra}
    elif isinstance(exc, exceptions.ValidationError):
        fields = flatten(exc.detail)
        body = {"error": _fields_message(fields, "invalid request"), "fields": fields}
    elif isinstance(exc, exceptions.ParseError):
        body = {"error": f"malformed request body: {exc.detail}", "fields": {}}
    elif isinstance(exc, exceptions.Throttled):
        body = {"error": f"too many requests; retry in {int(exc.wait or 1)} s", "fields": {}}
    else:
        detail = exc.detail
        message = str(detail) if not isinstance(detail, dict | list) else _fields_message(flatten(detail), "")
        body = {"error": message or exc.default_detail, "fields": {}}
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)
