"""Masking rules: what viewers never get to see of payloads and headers."""

from django.db import models

from dlqadmin.masking import MaskingKind, validate_rule

from .brokers import Source

__all__ = ["MaskingKind", "MaskingRule"]


class MaskingRule(models.Model):
    """Applied for users without the unmasked-view permission, in the UI, the API and exports.

    JSON path: dotted keys from the root, ``*`` matches any key or array item, and a leading
    ``**.`` matches the key at any depth: ``customer.email``, ``items.*.card``, ``**.password``.
    """

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=MaskingKind.choices)
    pattern = models.CharField(max_length=500)
    replacement = models.CharField(max_length=100, default="***")
    sources = models.ManyToManyField(Source, blank=True, related_name="+", help_text="Empty = every source.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}: {self.pattern})"

    def clean(self):
        validate_rule(self.kind, self.pattern)
