"""The demo's periodic status line: counts read straight from the demo database."""

from __future__ import annotations

import os
import sys

from devtools.demo.paths import ROOT


class Stats:
    """Counts read straight from the demo database, for the status line."""

    def __init__(self, env: dict[str, str]):
        os.environ.clear()  # this process reads the database exactly as the children do
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()

    def line(self) -> str:
        from django.db import connection
        from django.db.models import Count

        from dlqadmin.models import DeadLetter, ErrorGroup

        try:
            per_source = dict(
                DeadLetter.objects.values_list("source__name")
                .annotate(n=Count("id"))
                .order_by("source__name")
            )
            groups = ErrorGroup.objects.count()
        except Exception as exc:  # noqa: BLE001 - a slow count must not stop the demo
            return f"(counts unavailable: {exc})"
        finally:
            connection.close()
        total = sum(per_source.values())
        detail = ", ".join(f"{name} {n}" for name, n in per_source.items())
        return f"dead letters stored: {total} ({detail or 'none yet'}) in {groups} error groups"
