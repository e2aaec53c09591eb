"""Results: one Metric per measured value, printed as a table and written to the Markdown report.

The report file keeps whatever is outside the generated block (the hand-written findings and
before/after notes): only the text between ``BEGIN`` and ``END`` is replaced on each run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BEGIN = "<!-- bench:results:begin (written by `make bench`; edit outside this block) -->"
END = "<!-- bench:results:end -->"


@dataclass
class Metric:
    """One row. ``ratio``: dlqadmin / raw client for throughput rows (dlqadmin / peer pipeline for
    the ``/ peer`` rows; dlqadmin / min(raw client, database ceiling) for the informational
    ``/ min(raw, database)`` rows, which have no target), measured / target for the others
    (latency, memory, visibility): >= 0.70 passes the former, <= 1.0 the latter. Throughput rows
    tag ``numbers`` with ``broker``, ``flow`` (harvest / redrive) and ``side`` (raw, peer,
    dlqadmin, ratio) for the per-broker table."""

    part: str
    name: str
    value: str
    target: str = ""
    passed: bool | None = None
    ratio: float | None = None
    detail: str = ""
    numbers: dict = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "FAIL", None: "-"}[self.passed]


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p95 is a measured sample)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict:
    return {
        "samples": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def machine() -> dict:
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    try:
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "?"
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "load_at_start": load,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def table(metrics: list[Metric]) -> list[list[str]]:
    rows = [["metric", "value", "target", "result", "ratio"]]
    for m in metrics:
        ratio = "" if m.ratio is None else f"{m.ratio:.2f}"
        rows.append([m.name, m.value, m.target, m.verdict, ratio])
    return rows


#: (flow, side) -> column of the per-broker table, in order
BROKER_COLUMNS = {
    ("harvest", "raw"): "raw drain",
    ("harvest", "peer"): "peer harvest",
    ("harvest", "dlqadmin"): "dlqadmin harvest",
    ("harvest", "ratio"): "harvest dlqadmin / peer",
    ("redrive", "raw"): "raw publish",
    ("redrive", "peer"): "peer redrive",
    ("redrive", "dlqadmin"): "dlqadmin redrive",
    ("redrive", "ratio"): "redrive dlqadmin / peer",
}


def broker_table(metrics: list[Metric]) -> list[list[str]]:
    """One row per broker: raw client, peer pipeline, dlqadmin and dlqadmin / peer, for harvest
    and for redrive (msg/s), from the throughput rows tagged with ``broker``, ``flow`` and
    ``side``. Empty when the throughput part did not run."""
    cells: dict[str, dict[str, str]] = {}
    for m in metrics:
        column = BROKER_COLUMNS.get((m.numbers.get("flow"), m.numbers.get("side")))
        if column is None or "broker" not in m.numbers:
            continue
        if m.numbers["side"] == "ratio":
            text = f"{m.ratio:.2f}" + ("" if m.passed is None else f" ({m.verdict})")
        else:
            text = f"{m.numbers['rate']:,.0f}"
        cells.setdefault(m.numbers["broker"], {})[column] = text
    if not cells:
        return []
    header = ["broker", *BROKER_COLUMNS.values()]
    return [header] + [[broker, *(row.get(c, "") for c in header[1:])] for broker, row in cells.items()]


def _text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_text(metrics: list[Metric]) -> str:
    text = _text_table(table(metrics))
    per_broker = broker_table(metrics)
    return text + ("\n\n" + _text_table(per_broker) if per_broker else "")


def _markdown_table(rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(["---"] * len(rows[0])) + "|"]
    return out + ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows[1:]]


def render_markdown(metrics: list[Metric], facts: dict, settings: dict, notes: list[str]) -> str:
    rows = table(metrics)
    out = [
        BEGIN,
        "",
        f"Run: {facts['date']} on {facts['nproc']} CPU ({facts['cpu'] or 'unknown CPU'}), "
        f"{facts['memory_gib']} GiB RAM, load average at start {facts['load_at_start']}; "
        f"Python {facts['python']}, PostgreSQL {facts.get('postgresql', '?')} "
        f"(shared_buffers {facts.get('shared_buffers', '?')}), run took {facts.get('elapsed', '?')}.",
        "",
        "Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items()) + ".",
        "",
        *_markdown_table(rows),
    ]
    per_broker = broker_table(metrics)
    if per_broker:
        out += ["", "Per broker, side by side in this run (msg/s; peer: `bench/peer.py`):", ""]
        out += _markdown_table(per_broker)
    details = [m for m in metrics if m.detail]
    if details:
        out += ["", "Details:", ""]
        out += [f"- **{m.name}**: {m.detail}" for m in details]
    if notes:
        out += ["", "Notes from this run:", ""]
        out += [f"- {note}" for note in notes]
    out += ["", END]
    return "\n".join(out)


TEMPLATE = """# Benchmarks

`make bench` measures dlqadmin against the plain broker clients on the same machine, in the same
run, and reports ratios (absolute numbers drift on shared, noisy machines). See `bench/` and
issue 8. The block below is rewritten by every run; the sections after it are written by hand.

{block}

## Findings, before / after

(hand-written)
"""


def write_markdown(path: Path, block: str) -> None:
    """Replace the generated block in ``path`` (create the file from TEMPLATE if need be)."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + block + tail
    else:
        text = TEMPLATE.format(block=block)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_json(path: Path, metrics: list[Metric], facts: dict, settings: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"facts": facts, "settings": settings, "metrics": [asdict(m) for m in metrics]},
            indent=2,
            default=str,
        )
    )


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
