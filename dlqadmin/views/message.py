"""One message: payload views, headers, error, origin, history; raw download; edit and redrive.

A message of a source the user may not see is a 404. What a page shows of payload, headers and
error text is the user's MaskedMessage (dlqadmin.services.masking): masked for viewers."""

from __future__ import annotations

import hashlib
import json

from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_http_methods

from brokers.base import Capability
from dlqadmin import permissions, selectors_dashboard
from dlqadmin.forms import EditForm
from dlqadmin.masking import masked_for
from dlqadmin.models import DeadLetter, DeadLetterStatus
from dlqadmin.selectors import dead_letters_for
from dlqadmin.services.dead_letters import EditError, dead_letter_revise, is_json_payload
from dlqadmin.services.decoding import payload_decode, payload_reencode
from dlqadmin.services.masking import Masker, view_of
from dlqadmin.services.redrive.jobs import RedriveError, redrive_job_create
from dlqadmin.validators import is_id, parse_id

from . import presenters
from .common import client_addr, page, requires


def _letter(user, pk: int) -> DeadLetter:
    """The message, if ``user`` may see its source (404 otherwise, as if it did not exist)."""
    qs = dead_letters_for(user).select_related("source__connection", "error_group")
    return get_object_or_404(qs, pk=pk)


@require_GET
@requires(permissions.VIEW)
def message_detail(request, pk: int):
    letter = _letter(request.user, pk)
    revisions = list(letter.revisions.select_related("created_by"))
    attempts = list(letter.redrive_attempts.select_related("job", "revision").order_by("-id")[:100])
    capabilities = selectors_dashboard.source_capabilities(letter.source)
    masker = Masker(request.user)
    seen = masker.message(letter)
    payload = presenters.payload_view(letter, seen)
    decoded = presenters.DecodedView(masker.decoded(letter))
    group = letter.error_group
    return page(
        request,
        "dlqadmin/message.html",
        {
            "letter": letter,
            "payload": payload,
            "decoded": decoded,
            "default_view": "decoded" if decoded.shown and decoded.has_value else payload.default_view,
            "headers": presenters.headers_view(seen),
            "error_message": seen.error_message,
            "stacktrace": seen.stacktrace,
            "read_notes": [masker.text(letter.source_id, note) for note in letter.read_notes or []],
            "group_pattern": masker.text(group.source_id, group.message_pattern) if group else "",
            "origin": presenters.origin_rows(letter),
            "revisions": revisions,
            "latest_revision": revisions[0] if revisions else None,
            "attempts": attempts,
            "can_redrive_source": Capability.REDRIVE in capabilities,
            "queued": letter.status == DeadLetterStatus.QUEUED,
            "key_text": presenters.safe_text(seen.key) if seen.key is not None else None,
            "properties": seen.properties,
            "nav": "messages",
        },
    )


@require_GET
@requires(permissions.VIEW)
def message_payload(request, pk: int):
    """The payload bytes (masked for a masked user) as an attachment, never rendered inline."""
    letter = _letter(request.user, pk)
    revision = None
    wanted = request.GET.get("revision", "")
    if wanted:
        if not is_id(wanted):
            raise Http404("no such revision")
        revision = get_object_or_404(letter.revisions, pk=parse_id(wanted))
    view = presenters.payload_for(request.user, letter, revision)
    response = HttpResponse(view.data, content_type="application/octet-stream")
    suffix = f"-rev{revision.pk}" if revision else ""
    response["Content-Disposition"] = f'attachment; filename="dead-letter-{letter.pk}{suffix}.bin"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@require_http_methods(["GET", "POST"])
@requires(permissions.EDIT)
def message_edit(request, pk: int):
    """Edit payload and headers -> review the diff -> save a revision (and redrive it).

    The original row is never changed: the edit is a DeadLetterRevision, and a redrive sends the
    latest revision. Editing starts from the original content, so a user who sees masked values
    may not edit (no role combines both today; the service refuses it too)."""
    if masked_for(request.user):
        raise PermissionDenied("your role does not allow: view unmasked")
    letter = _letter(request.user, pk)
    latest = letter.revisions.first()
    seen = view_of(letter, request.user, revision=latest)
    base_payload = presenters.payload_view(letter, seen)
    base_headers = seen.headers or []
    is_json = is_json_payload(letter)
    # a compressed or binary-encoded payload (gzip, Avro ...) is edited as its decoded JSON
    decoded = payload_decode(
        letter, payload=bytes(latest.payload) if latest else None, headers=latest.headers if latest else None
    )
    decodable = decoded.has_value and decoded.changes_the_view
    step = request.POST.get("step", "edit")
    if request.method == "GET":
        encoding, text = presenters.editable_payload(base_payload)
        if decodable:
            encoding, text = "decoded", json.dumps(decoded.value, indent=2, ensure_ascii=False)
        form = EditForm(
            initial={
                "payload_encoding": encoding,
                "payload": text,
                "headers": presenters.editable_headers(base_headers),
            },
            is_json=is_json,
            decodable=decodable,
        )
        return _edit_page(request, letter, form, latest=latest, is_json=is_json)
    form = EditForm(request.POST, is_json=is_json, decodable=decodable)
    if not form.is_valid():
        return _edit_page(request, letter, form, latest=latest, is_json=is_json, status=400)
    new_payload = form.cleaned_data["payload_bytes"]
    as_decoded = form.cleaned_data["payload_encoding"] == "decoded"
    if as_decoded:
        try:
            new_payload = payload_reencode(letter, form.cleaned_data["payload_value"], actor=request.user)
        except EditError as exc:
            form.add_error(
                "payload",
                [f"{k.removeprefix('payload_json')[1:] or 'payload'}: {v}" for k, v in exc.errors.items()],
            )
            return _edit_page(request, letter, form, latest=latest, is_json=is_json, status=400)
    new_headers = form.cleaned_data["headers_list"]
    digest = _digest(new_payload, new_headers)
    if step in ("save", "save_redrive") and request.POST.get("reviewed") != digest:
        step = "review"  # changed after the review (or never reviewed): show the diff again
    if step == "edit":
        return _edit_page(request, letter, form, latest=latest, is_json=is_json)
    if step == "review":
        if as_decoded:  # the decoded values, not the encoded bytes
            payload_diff = presenters.diff_lines(
                json.dumps(decoded.value, indent=2, ensure_ascii=False),
                json.dumps(form.cleaned_data["payload_value"], indent=2, ensure_ascii=False),
            )
        else:
            payload_diff = presenters.diff_lines(
                presenters.comparable_payload(base_payload.data), presenters.comparable_payload(new_payload)
            )
        headers_diff = presenters.diff_lines(
            presenters.headers_text(base_headers), presenters.headers_text(new_headers)
        )
        return _edit_page(
            request,
            letter,
            form,
            latest=latest,
            is_json=is_json,
            review={
                "payload_diff": payload_diff,
                "headers_diff": headers_diff,
                "unchanged": not payload_diff and not headers_diff,
                "size": len(new_payload),
                "digest": digest,
            },
        )
    if step not in ("save", "save_redrive"):
        return _edit_page(request, letter, form, latest=latest, is_json=is_json, status=400)
    if step == "save_redrive" and not permissions.can(request.user, permissions.REDRIVE):
        raise PermissionDenied("your role does not allow: redrive")
    try:
        revision = dead_letter_revise(
            actor=request.user,
            dead_letter=letter,
            payload=new_payload,
            headers=new_headers,
            note=form.cleaned_data.get("note") or "",
            remote_addr=client_addr(request),
        )
    except EditError as exc:
        for field, message in exc.errors.items():
            form.add_error(field if field in form.fields else None, message)
        return _edit_page(request, letter, form, latest=latest, is_json=is_json, status=400)
    if step == "save":
        flash.success(request, f"Saved revision {revision.pk}. The original message is unchanged.")
        return redirect("dlq-message", pk=letter.pk)
    try:
        job = redrive_job_create(actor=request.user, ids=[letter.pk], remote_addr=client_addr(request))
    except RedriveError as exc:
        flash.error(
            request, f"Revision {revision.pk} saved, but not redriven: {'; '.join(exc.errors.values())}"
        )
        return redirect("dlq-message", pk=letter.pk)
    flash.success(request, f"Saved revision {revision.pk} and started redrive job #{job.pk}.")
    return redirect("dlq-job", pk=job.pk)


def _digest(payload: bytes, headers: list) -> str:
    """Ties a save to the exact content the operator reviewed."""
    text = json.dumps(headers, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(payload + b"\x00" + text).hexdigest()


def _edit_page(request, letter, form, *, latest, is_json, review=None, status=200):
    return page(
        request,
        "dlqadmin/message_edit.html",
        {
            "letter": letter,
            "form": form,
            "latest_revision": latest,
            "is_json": is_json,
            "review": review,
            "nav": "messages",
        },
        status=status,
    )
