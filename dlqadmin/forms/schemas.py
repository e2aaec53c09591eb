"""The schema-store upload form and its several-files field."""

from __future__ import annotations

import base64

from django import forms

from dlqadmin.models import StoredSchema
from dlqadmin.services.schemas import stored_schema_save


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
