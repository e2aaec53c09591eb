"""Forms that act on dead-letter messages: redrive options and an edited payload/header set."""

from __future__ import annotations

import base64
import binascii
import json

from django import forms

from brokers import headers as header_codec
from dlqadmin.services.redrive import options as bounds
from dlqadmin.validators import find_nul


class RedriveForm(forms.Form):
    """Options of a redrive job (the selection travels in hidden fields, see views.common)."""

    ROUTE_ORIGINAL, ROUTE_EXCHANGE, ROUTE_CUSTOM = "queue", "exchange", "custom"

    velocity = forms.FloatField(
        required=False,
        min_value=bounds.MIN_VELOCITY,
        max_value=bounds.MAX_VELOCITY,
        error_messages={"min_value": bounds.VELOCITY_MESSAGE, "max_value": bounds.VELOCITY_MESSAGE},
        label="Velocity (messages/s)",
        help_text="Empty = as fast as the broker confirms.",
    )
    batch_size = forms.IntegerField(
        min_value=1,
        max_value=bounds.MAX_BATCH,
        initial=bounds.DEFAULT_BATCH,
        label="Batch size",
        error_messages={"min_value": bounds.BATCH_MESSAGE, "max_value": bounds.BATCH_MESSAGE},
    )
    copy_original = forms.BooleanField(
        required=False,
        initial=True,
        label="Copy the original headers (broker-owned headers are always dropped)",
    )
    keep_diagnostics = forms.BooleanField(
        required=False, label="Keep failure diagnostics (kafka_dlt-*, x-exception-*, ...)"
    )
    strip = forms.CharField(
        required=False,
        label="Also strip headers starting with",
        help_text="Comma-separated prefixes, e.g. traceparent, x-b3-",
    )
    extra = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Add headers",
        help_text="One name=value per line.",
    )
    spring_retry_count = forms.BooleanField(required=False, label="Also set Spring's retry-count (RabbitMQ)")
    override_loop_guard = forms.BooleanField(
        required=False, label="Redrive parked messages too (override the loop guard)"
    )
    rabbit_route = forms.ChoiceField(
        required=False,
        initial=ROUTE_ORIGINAL,
        widget=forms.RadioSelect,
        choices=[
            (
                ROUTE_ORIGINAL,
                "Back to the queue the message failed in (no queue recorded: its original exchange "
                "and routing key)",
            ),
            (ROUTE_EXCHANGE, "Through the original exchange and routing key"),
            (ROUTE_CUSTOM, "To another exchange / routing key"),
        ],
        label="RabbitMQ destination",
    )
    exchange = forms.CharField(required=False, label="Exchange", help_text="Empty = the default exchange.")
    routing_key = forms.CharField(required=False, label="Routing key")
    topic = forms.CharField(required=False, label="Kafka topic", help_text="Empty = the original topic.")
    partition = forms.IntegerField(required=False, min_value=0, max_value=2**31 - 1, label="Partition")
    subject = forms.CharField(required=False, label="NATS subject", help_text="Empty = the original subject.")

    def __init__(self, *args, kinds: set[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.kinds = kinds or set()

    def clean_extra(self) -> dict:
        out = {}
        for line in self.cleaned_data["extra"].splitlines():
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep or not name.strip():
                raise forms.ValidationError(f"“{line}” must look like name=value")
            out[name.strip()] = value.strip()
        return out

    def clean_strip(self) -> list[str]:
        return [p.strip() for p in self.cleaned_data["strip"].split(",") if p.strip()]

    def clean(self):
        data = super().clean()
        destination: dict = {}
        route = data.get("rabbit_route") or self.ROUTE_ORIGINAL
        if route == self.ROUTE_EXCHANGE:
            destination["use_original_route"] = True
        elif route == self.ROUTE_CUSTOM:
            if not data.get("routing_key"):
                self.add_error(
                    "routing_key", "give the routing key (the queue name for the default exchange)"
                )
            destination.update(exchange=data.get("exchange") or "", routing_key=data.get("routing_key") or "")
        if data.get("topic"):
            destination["topic"] = data["topic"].strip()
            if data.get("partition") is not None:
                destination["partition"] = data["partition"]
        elif data.get("partition") is not None:
            self.add_error("partition", "a partition needs a topic")
        if data.get("subject"):
            destination["subject"] = data["subject"].strip()
        overriding = {k for k in destination if k != "use_original_route"}
        if overriding and len(self.kinds) > 1:
            self.add_error(
                None, "a destination override applies to one broker kind; narrow the selection first"
            )
        data["destination"] = destination
        policy: dict = {}
        if not data.get("copy_original"):
            policy["copy_original"] = False
        if data.get("keep_diagnostics"):
            policy["keep_diagnostics"] = True
        if data.get("strip"):
            policy["strip"] = data["strip"]
        if data.get("extra"):
            policy["extra"] = data["extra"]
        if data.get("spring_retry_count"):
            policy["spring_retry_count"] = True
        data["header_policy"] = policy
        return data


class EditForm(forms.Form):
    """An edited payload and header set. ``is_json`` (the original is JSON) makes JSON required."""

    ENCODINGS = [("text", "Text (UTF-8)"), ("base64", "Base64 (binary)")]
    DECODED = ("decoded", "Decoded JSON (re-encoded as the original on save)")

    payload_encoding = forms.ChoiceField(choices=ENCODINGS, initial="text", label="Payload as")
    payload = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 18, "spellcheck": "false", "class": "mono"}),
    )
    headers = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "mono"}),
        help_text='One ["name", {"t": type, "v": value}] pair per line; types as shown in the headers table.',
    )
    note = forms.CharField(required=False, max_length=500, label="Why (kept in the history)")

    def __init__(self, *args, is_json: bool = False, decodable: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_json = is_json
        if decodable:
            self.fields["payload_encoding"].choices = [self.DECODED, *self.ENCODINGS]

    def clean(self):
        data = super().clean()
        raw = data.get("payload") or ""
        if data.get("payload_encoding") == "decoded":
            # the view re-encodes the value (services.decoding.payload_reencode) into payload_bytes
            try:
                data["payload_value"] = json.loads(raw)
            except ValueError as exc:
                self.add_error(
                    "payload", f"the decoded payload is edited as JSON and this is not JSON: {exc}"
                )
            payload = b""
        elif data.get("payload_encoding") == "base64":
            try:
                payload = base64.b64decode("".join(raw.split()), validate=True)
            except (binascii.Error, ValueError):
                self.add_error("payload", "not valid base64")
                return data
        else:
            payload = raw.replace("\r\n", "\n").encode("utf-8")
        if self.is_json and data.get("payload_encoding") != "decoded":
            try:
                json.loads(payload)
            except ValueError as exc:
                self.add_error("payload", f"the message is JSON and this is not valid JSON: {exc}")
        data["payload_bytes"] = payload
        text = (data.get("headers") or "").strip()
        if not text:
            data["headers_list"] = []
        else:
            try:
                pairs = json.loads(text)
                if not isinstance(pairs, list):
                    raise ValueError("expected a JSON list")
                for pair in pairs:
                    name, node = pair
                    if not isinstance(name, str) or not isinstance(node, dict):
                        raise ValueError(f"{pair!r} is not [name, {{t, v}}]")
                    header_codec.decode_value(node)
            except (ValueError, TypeError, KeyError) as exc:
                self.add_error("headers", f"headers must be a JSON list of [name, {{t, v}}] pairs: {exc}")
            else:
                where = find_nul(pairs)
                if where:  # JSON's \u0000: PostgreSQL's jsonb cannot hold it
                    self.add_error("headers", f"headers may not contain NUL characters (at {where})")
                data["headers_list"] = pairs
        return data
