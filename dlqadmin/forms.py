"""Dashboard forms: validation of the input only. Writes go through services: the ``save``
methods of the connection and source forms call dlqadmin.services.connections / sources (which
validate the domain rules, audit, and raise ValidationError; ``add_service_errors`` shows those
on the form)."""

from __future__ import annotations

import base64
import binascii
import json

from django import forms
from django.core.exceptions import ValidationError

from brokers import headers as header_codec
from dlqadmin.broker_options import CONNECTION_OPTIONS, SOURCE_OPTIONS, option_problems
from dlqadmin.models import Connection, ErrorGroupStatus, Source, SourceMode, StoredSchema
from dlqadmin.services.connections import connection_create, connection_update
from dlqadmin.services.redrive import options as bounds
from dlqadmin.services.schemas import stored_schema_save
from dlqadmin.services.sources import source_create, source_modes, source_update
from dlqadmin.validators import control_character, find_nul


def _json_object(value: str, field: str) -> dict:
    if not value.strip():
        return {}
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise forms.ValidationError(f"{field} must be a JSON object: {exc}") from None
    if not isinstance(parsed, dict):
        raise forms.ValidationError(f'{field} must be a JSON object, like {{"key": "value"}}')
    where = find_nul(parsed)
    if where:  # JSON's \u0000: PostgreSQL's jsonb cannot hold it
        raise forms.ValidationError(f"{field} may not contain NUL characters (at {where})")
    return parsed


def _check_options(form: forms.Form, options: dict | None, tables, chosen: str | None) -> None:
    """Types and ranges of the known options, as the API checks them (dlqadmin.broker_options)."""
    for key, message in option_problems(options or {}, tables, chosen).items():
        form.add_error("options_json", f"{key}: {message}")


# ------------------------------------------------------------------------------------------
# Redrive


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


# ------------------------------------------------------------------------------------------
# Edit and redrive


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


# ------------------------------------------------------------------------------------------
# Audit log


class AuditFilterForm(forms.Form):
    """The audit log's filters (CharField refuses NUL, which PostgreSQL cannot compare)."""

    action = forms.CharField(required=False, max_length=100)
    actor = forms.CharField(required=False, max_length=150)


# ------------------------------------------------------------------------------------------
# Error groups


class GroupStatusForm(forms.Form):
    status = forms.ChoiceField(choices=ErrorGroupStatus.choices)


# ------------------------------------------------------------------------------------------
# Connections and sources


class ServiceErrorsMixin:
    """Show a service's ValidationError on the form (model field names -> form fields)."""

    def add_service_errors(self, exc: ValidationError) -> None:
        pairs = exc.message_dict.items() if hasattr(exc, "error_dict") else [(None, exc.messages)]
        for name, messages in pairs:
            field = "options_json" if name == "options" else name
            for message in messages:
                self.add_error(field if field in self.fields else None, message)


def _options_field(rows: int, help_text: str) -> forms.CharField:
    return forms.CharField(
        required=False,
        label="Options (JSON)",
        widget=forms.Textarea(attrs={"rows": rows, "spellcheck": "false"}),
        help_text=help_text,
    )


class OptionsJsonMixin(ServiceErrorsMixin):
    """The model's ``options`` edited as a JSON object in an ``options_json`` field (declare it
    with :func:`_options_field`), checked against ``options_tables`` for the chosen
    ``options_by`` (kind or mode) as the API checks them."""

    options_tables: tuple
    options_by: str

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["options_json"] = json.dumps(self.instance.options or {}, indent=2)

    def clean_options_json(self) -> dict:
        return _json_object(self.cleaned_data["options_json"], "options")

    def clean(self):
        data = super().clean()
        _check_options(self, data.get("options_json"), self.options_tables, data.get(self.options_by))
        return data


class ConnectionForm(OptionsJsonMixin, forms.ModelForm):
    """Add or edit a connection. Credentials are write-only: never rendered back."""

    new_password = forms.CharField(
        required=False,
        label="Password",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave empty to keep the stored password.",
    )
    clear_password = forms.BooleanField(required=False, label="Remove the stored password")
    new_tls_client_key = forms.CharField(
        required=False,
        label="TLS client key",
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text="PEM private key; write-only. Leave empty to keep the stored key.",
    )
    new_schema_registry_secret = forms.CharField(
        required=False,
        label="Schema Registry password or token",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. With a user: basic-auth password; without: a bearer token.",
    )
    clear_schema_registry_secret = forms.BooleanField(
        required=False, label="Remove the stored registry secret"
    )
    options_json = _options_field(3, 'Kind-specific client options, e.g. {"sasl_mechanism": "PLAIN"}.')
    options_tables, options_by = CONNECTION_OPTIONS, "kind"

    class Meta:
        model = Connection
        fields = [
            "name",
            "kind",
            "url",
            "username",
            "tls_enabled",
            "tls_verify",
            "tls_ca_cert",
            "tls_client_cert",
            "schema_registry_url",
            "schema_registry_username",
        ]
        widgets = {
            "tls_ca_cert": forms.Textarea(attrs={"rows": 3}),
            "tls_client_cert": forms.Textarea(attrs={"rows": 3}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["new_password"].help_text = (
                "Write-only. A password is stored; leave empty to keep it."
                if self.instance.has_password
                else "Write-only. No password stored."
            )

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        bad = control_character(url)
        if bad:
            raise forms.ValidationError(f"a URL may not contain control characters ({bad})")
        if "@" in url.split("//", 1)[-1].split("/", 1)[0]:
            raise forms.ValidationError("put credentials in the username and password fields, not in the URL")
        return url

    def save(self, *, actor, remote_addr=None) -> Connection:
        """Create or update through the service. Raises ValidationError, PermissionDenied."""
        data = {name: self.cleaned_data[name] for name in self.Meta.fields}
        data["options"] = self.cleaned_data["options_json"]
        password = self.cleaned_data.get("new_password") or None
        if self.cleaned_data.get("clear_password"):
            password = ""
        client_key = self.cleaned_data.get("new_tls_client_key") or None
        registry_secret = self.cleaned_data.get("new_schema_registry_secret") or None
        if self.cleaned_data.get("clear_schema_registry_secret"):
            registry_secret = ""
        if self.instance.pk is None:
            return connection_create(
                actor=actor,
                password=password or "",
                tls_client_key=client_key or "",
                schema_registry_secret=registry_secret or "",
                remote_addr=remote_addr,
                **data,
            )
        return connection_update(
            actor=actor,
            connection=self.instance,
            password=password,
            tls_client_key=client_key,
            schema_registry_secret=registry_secret,
            remote_addr=remote_addr,
            **data,
        )


class SourceForm(OptionsJsonMixin, forms.ModelForm):
    """Add (from discovery or by hand) or edit a dead-letter source of a connection."""

    options_json = _options_field(2, "Kind-specific harvest options.")
    options_tables, options_by = SOURCE_OPTIONS, "mode"

    class Meta:
        model = Source
        fields = ["name", "mode", "address", "enabled", "remove_after_harvest", "max_redrives"]

    def __init__(self, *args, connection: Connection, **kwargs):
        super().__init__(*args, **kwargs)
        self.connection = connection
        modes = source_modes(connection.kind) or tuple(SourceMode.values)
        self.fields["mode"].choices = [(m, SourceMode(m).label) for m in modes]
        if SourceMode.ADVISORY not in modes:  # the model's help is about NATS advisories
            self.fields["mode"].help_text = ""

    def _post_clean(self):
        self.instance.connection = self.connection
        super()._post_clean()

    def validate_unique(self):
        """Unique name and location are checked by source_validate when saving."""

    def save(self, *, actor, remote_addr=None) -> Source:
        """Create or update through the service. Raises ValidationError, PermissionDenied."""
        data = {name: self.cleaned_data[name] for name in self.Meta.fields}
        data["options"] = self.cleaned_data["options_json"]
        if self.instance.pk is None:
            return source_create(actor=actor, connection=self.connection, remote_addr=remote_addr, **data)
        return source_update(actor=actor, source=self.instance, remote_addr=remote_addr, **data)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files under one name (a list, empty when none is chosen)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        items = data if isinstance(data, (list, tuple)) else [data]
        single = super().clean
        return [found for item in items if (found := single(item, initial)) is not None]


class StoredSchemaForm(forms.ModelForm):
    """Upload a schema into the store: a file (.avsc, JSON Schema, Protobuf descriptor set), the
    .proto files (a main file and its imports, compiled by the service) or pasted text, bound to
    sources. Saved through ``services.schemas.stored_schema_save``."""

    upload = MultipleFileField(
        required=False,
        label="Schema file(s)",
        help_text=".avsc, a JSON Schema .json, a Protobuf descriptor set "
        "(protoc --include_imports --descriptor_set_out=orders.desc orders.proto), "
        "or the .proto files: the main file and every file it imports, chosen together.",
    )
    definition = forms.CharField(
        required=False,
        label="…or paste it",
        widget=forms.Textarea(attrs={"rows": 6, "class": "mono", "spellcheck": "false"}),
    )

    class Meta:
        model = StoredSchema
        fields = ["name", "kind", "message_type", "sources", "header", "header_value"]
        widgets = {"sources": forms.CheckboxSelectMultiple}

    MAX_UPLOAD = 1024 * 1024

    def clean(self):
        data = super().clean()
        uploads = data.get("upload") or []
        data["proto_files"] = None
        if any(upload.size > self.MAX_UPLOAD for upload in uploads):
            raise forms.ValidationError({"upload": f"larger than {self.MAX_UPLOAD} bytes"})
        protos = [u for u in uploads if u.name.endswith(".proto")]
        if protos:
            if data.get("kind") != "protobuf" or len(protos) != len(uploads):
                raise forms.ValidationError({"upload": ".proto files are uploaded alone, as kind Protobuf"})
            try:
                data["proto_files"] = {u.name: u.read().decode("utf-8") for u in protos}
            except UnicodeDecodeError:
                raise forms.ValidationError({"upload": "not UTF-8 text"}) from None
            data["definition"] = ""
            return data
        if len(uploads) > 1:
            raise forms.ValidationError({"upload": "one schema file (or several .proto files)"})
        if uploads:
            raw = uploads[0].read()
            if data.get("kind") == "protobuf":
                data["definition"] = base64.b64encode(raw).decode("ascii")
            else:
                try:
                    data["definition"] = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise forms.ValidationError({"upload": "not UTF-8 text"}) from None
        if not data.get("definition"):
            raise forms.ValidationError({"upload": "choose a file or paste the schema"})
        return data

    def _post_clean(self):
        pass  # the service validates the model (full_clean) and reports field errors

    def save(self, *, actor, remote_addr=None) -> StoredSchema:
        values = {
            name: self.cleaned_data.get(name) or "" for name in ("name", "kind", "message_type", "header")
        }
        values["header_value"] = self.cleaned_data.get("header_value") or ""
        return stored_schema_save(
            actor=actor,
            sources=list(self.cleaned_data.get("sources") or []),
            remote_addr=remote_addr,
            **self._definition(),
            **values,
        )

    def _definition(self) -> dict:
        if self.cleaned_data.get("proto_files"):
            return {"proto_files": self.cleaned_data["proto_files"]}
        return {"definition": self.cleaned_data["definition"]}
