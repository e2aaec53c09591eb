"""Browser tests: Debian's Chromium driven by Playwright against daphne serving the real ASGI app.

pytest-django's live_server is WSGI (no websockets), so a daphne subprocess serves
``tests.browser.asgi`` on a free port, against this run's test database and the shared Redis
channel layer: events the test process publishes (``dlqadmin.live``) reach the browser.
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import IN_CI

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # requirements-dev.txt pins it; reported below, per test
    expect = sync_playwright = None

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module", autouse=True)
def _orm_beside_playwright():
    """Playwright's sync API keeps an event loop in this thread; Django's ORM is used here only
    between browser steps, never concurrently with it. Set for browser modules only."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited: {log.read_text(errors='replace')[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"daphne did not listen on {port}: {log.read_text(errors='replace')[-3000:]}")


def _missing(reason: str) -> None:
    """Like the service checks: fail in CI, skip (with the fix) on a developer machine."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, celery_queue, tmp_path_factory):
    """Base URL of a daphne process serving the dashboard against the test database."""
    if not Path(CHROMIUM).exists():
        _missing(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/ensure-services.sh)")
    if sync_playwright is None:
        _missing("playwright is not installed: pip install -r requirements-dev.txt")
    from django.conf import settings
    from django.db import connection
    from django.test.utils import override_settings

    with django_db_blocker.unblock():
        db = connection.settings_dict
    prefix = f"dlqtest{uuid.uuid4().hex[:12]}"
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    if "redis" in layers["default"]["BACKEND"]:
        layers["default"].setdefault("CONFIG", {})["prefix"] = prefix
    port = _free_port()
    log = tmp_path_factory.mktemp("daphne") / "daphne.log"
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "CELERY_TASK_DEFAULT_QUEUE": celery_queue,
        "DB_CONN_MAX_AGE": "0",
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "dlqadmin.settings",
        "CHANNEL_LAYER_PREFIX": prefix,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "tests.browser.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_port(port, proc, log)
        with override_settings(CHANNEL_LAYERS=layers):  # this process publishes under the same prefix
            yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        print(log.read_text(errors="replace")[-2000:])


@pytest.fixture(scope="module")
def browser(server):
    # a live update lost in a websocket reconnect is caught up by the page's resync on reconnect
    expect.set_options(timeout=15_000)

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(  # the enforced Content-Security-Policy reports what it blocked on the console
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.js_errors = errors
    yield page
    context.close()


def sign_in(page, server: str, username: str, password: str = "pass-123-word") -> None:
    page.goto(f"{server}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/")


def in_thread(fn, *args, **kwargs):
    """Run ``fn`` in a fresh thread (no event loop there, so ``async_to_sync`` bridges work),
    close its database connection, and return its result or raise its exception."""
    box: dict = {}

    def run():
        from django.db import connections

        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    if "error" in box:
        raise box["error"]
    return box.get("value")
