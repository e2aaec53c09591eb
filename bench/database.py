"""The bench database: created on the server of DATABASE_URL (or BENCH_DATABASE_URL), migrated
with dlqadmin's own migrations, and dropped at the end (connections of the run included)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


def bench_url(server_url: str, name: str) -> str:
    """``server_url`` with its database name replaced by ``name``."""
    parts = urlsplit(server_url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"the bench needs PostgreSQL; DATABASE_URL is {parts.scheme}://...")
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def _admin(server_url: str) -> psycopg.Connection:
    parts = urlsplit(server_url)
    url = urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))
    return psycopg.connect(url, autocommit=True)


def create(server_url: str, name: str) -> str:
    with _admin(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return bench_url(server_url, name)


def drop(server_url: str, name: str) -> None:
    with _admin(server_url) as conn:
        for _ in range(3):
            try:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                return
            except psycopg.errors.ObjectInUse:
                time.sleep(1)


def migrate() -> float:
    """Apply every migration to the (already configured) default database; returns seconds."""
    from django.core.management import call_command

    start = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    return time.perf_counter() - start


def server_facts() -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute("SHOW shared_buffers")
        buffers = cursor.fetchone()[0]
    return {"postgresql": version, "shared_buffers": buffers}
