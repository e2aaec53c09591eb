"""Shared serializer pieces: strict input (unknown keys are a 400), NUL-free JSON, id lists."""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers

from dlqadmin.services.redrive.options import MAX_SELECTION_IDS, ids_message
from dlqadmin.validators import find_nul

MAX_BIGINT = 2**63 - 1


class StrictMixin:
    """Reject keys the serializer does not know (a typo such as ``filters`` must not be ignored).
    Read-only field names are accepted (and ignored) so a GET body can be sent back."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(str(k) for k in data if k not in self.fields)
            if unknown:
                raise serializers.ValidationError({k: "unknown field" for k in unknown})
        return super().to_internal_value(data)


class ServiceWritesMixin:
    # create / update call the model's services, which validate and audit (the view passes
    # ``actor`` and ``remote_addr`` through ``serializer.save``). No docstring: drf-spectacular
    # would show it as every using serializer's description.

    #: (create service, update service, the keyword the update service takes the instance as)
    services: tuple

    def create(self, validated_data):
        create, _update, _name = self.services
        return create(**validated_data)

    def update(self, instance, validated_data):
        _create, update, name = self.services
        return update(**{name: instance}, **validated_data)


class StrictSerializer(StrictMixin, serializers.Serializer):
    pass


def reject_nul(value):
    where = find_nul(value)
    if where:
        raise serializers.ValidationError(f"text may not contain NUL characters (at {where})")
    return value


class StrictCharField(serializers.CharField):
    """A string and only a string (DRF's CharField would turn 5 into "5")."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class IdListField(serializers.ListField):
    """A non-empty list of at most MAX_SELECTION_IDS positive integer ids (checked before the items)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("child", serializers.IntegerField(min_value=1, max_value=MAX_BIGINT))
        kwargs.setdefault("allow_empty", False)
        kwargs.setdefault("max_length", MAX_SELECTION_IDS)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, list) and len(data) > MAX_SELECTION_IDS:
            raise serializers.ValidationError(ids_message(len(data)))
        return super().to_internal_value(data)
