""".ci/run lints before it tests, and a lint failure fails the run (no tests run after it).

The script is run for real with a stand-in `make` first on PATH that records its targets and
fails the ones named in FAIL_TARGETS.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FAKE_MAKE = """#!/usr/bin/env bash
echo "$*" >> "$MAKE_LOG"
for target in $FAIL_TARGETS; do [ "$1" = "$target" ] && exit 2; done
exit 0
"""


def _run_ci(tmp_path, fail_targets=""):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text(FAKE_MAKE)
    (bin_dir / "make").chmod(0o755)
    log = tmp_path / "make.log"
    log.touch()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "MAKE_LOG": str(log)}
    env["FAIL_TARGETS"] = fail_targets
    result = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
    )
    return result, log.read_text().split()


def test_ci_runs_lint_then_the_tests(tmp_path):
    result, targets = _run_ci(tmp_path)
    assert result.returncode == 0, result.stderr
    assert targets == ["lint", "test"]


def test_a_lint_failure_fails_ci_loudly_before_any_test(tmp_path):
    result, targets = _run_ci(tmp_path, fail_targets="lint")
    assert result.returncode != 0
    assert targets == ["lint"]
    assert "FAILED: make lint" in result.stderr


def test_a_test_failure_fails_ci(tmp_path):
    result, targets = _run_ci(tmp_path, fail_targets="test")
    assert result.returncode != 0
    assert targets == ["lint", "test"]


def _collected(*args):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_make_test_fast_leaves_out_browser_and_fault_tests_and_make_test_keeps_them():
    (fast_markers,) = re.findall(r"^FAST_MARKERS := (.+)$", (ROOT / "Makefile").read_text(), re.M)
    folders = ["tests/browser", "tests/faults", "tests/test_compose.py"]
    full = _collected(*folders)
    fast = _collected("-m", fast_markers, *folders)
    assert any(t.startswith("tests/browser/") for t in full)
    assert any(t.startswith("tests/faults/") for t in full)
    assert fast == [t for t in full if t.startswith("tests/test_compose.py")]
