"""What the user of ``make demo`` reads: progress lines, status marks, errors to fix."""

from __future__ import annotations


class DemoError(Exception):
    """Something the user must fix; the message says what."""


def say(line: str = "") -> None:
    print(line, flush=True)


def indent(text: str) -> str:
    return "\n".join(f"    | {line}" for line in text.splitlines())


def status(mark: str, what: str, detail: str) -> None:
    say(f"  [{mark}] {what:<14} {detail}")


def more(detail: str) -> None:
    """A continuation line under the last ``status`` detail."""
    say(f"{'':22}{detail}")
