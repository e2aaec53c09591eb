"""Connection and source forms: ``options`` edited as JSON, saved through
dlqadmin.services.connections / sources."""

from __future__ import annotations

import json

from django import forms
from django.core.exceptions import ValidationError

from dlqadmin.broker_options import CONNECTION_OPTIONS, SOURCE_OPTIONS, option_problems
from dlqadmin.models import Connection, Source, SourceMode
from dlqadmin.services.connections import connection_create, connection_update
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
