"""Settings come from the environment and refuse insecure production setups."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD_KEY = "k7Qm2-xW9pLr4TzV8nB3cJ6hY1sD5fG0aE_uKiOoPq" + "Z3vN8bX1"  # 50 characters, generated
FERNET_KEY = "8Fq1v2o0m0vXH1bFz2C8CkQ6q0m0n7cV9wQe3rT5y7U="


def load_settings(**env):
    clean = {
        k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DLQADMIN_ENCRYPTION_KEY"}
    }
    clean.update(env)
    clean = {k: v for k, v in clean.items() if v is not None}  # None: unset
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print('DEBUG', settings.DEBUG)",
        ],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "dlqadmin.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_refuses_to_start_without_secret_key_when_debug_is_off():
    result = load_settings(DLQADMIN_ENCRYPTION_KEY="x" * 44)
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_it_refuses_to_start_without_encryption_key_when_debug_is_off():
    result = load_settings(SECRET_KEY=GOOD_KEY)
    assert result.returncode != 0
    assert "DLQADMIN_ENCRYPTION_KEY is required" in result.stderr
    command = result.stderr.split("generate one with: ", 1)[1].rsplit(")", 1)[0]
    generated = subprocess.run(command, shell=True, capture_output=True, text=True, check=True).stdout.strip()
    assert load_settings(SECRET_KEY=GOOD_KEY, DLQADMIN_ENCRYPTION_KEY=generated).returncode == 0


@pytest.mark.parametrize(
    ("keys", "why"),
    [
        ("change-me", "key 1 of 1 is not URL-safe base64"),
        (f"{FERNET_KEY},c2hvcnQ=", "key 2 of 2 decodes to 5 bytes, not 32"),
    ],
)
def test_it_refuses_an_encryption_key_that_is_no_fernet_key(keys, why):
    result = load_settings(SECRET_KEY=GOOD_KEY, DLQADMIN_ENCRYPTION_KEY=keys)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: DLQADMIN_ENCRYPTION_KEY: {why}, so it is no Fernet key" in result.stderr
    assert "c2hvcnQ=" not in result.stderr  # the key is not repeated


def test_debug_is_off_unless_asked_for():
    result = load_settings(SECRET_KEY=GOOD_KEY, DLQADMIN_ENCRYPTION_KEY=FERNET_KEY)
    assert result.returncode == 0, result.stderr
    assert "DEBUG False" in result.stdout


def test_secret_key_can_come_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(f"{GOOD_KEY}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "dlqadmin.settings",
            "DEBUG": "false",
            "SECRET_KEY_FILE": str(secret),
            "DLQADMIN_ENCRYPTION_KEY": FERNET_KEY,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == GOOD_KEY


def env_example_value(name: str) -> str:
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{name} not in .env.example")


@pytest.mark.parametrize(
    ("key", "why"),
    [
        (env_example_value("SECRET_KEY"), "is a published placeholder"),
        ("django-insecure-" + "q" * 20 + GOOD_KEY, "is a published placeholder"),
        ("s3cret", "is 6 characters long, shorter than 50"),
        ("test-secret-key-not-for-production", "is a published placeholder"),
        ("ab" * 30, "has fewer than 5 different characters"),
    ],
)
def test_it_refuses_a_placeholder_or_short_secret_key_when_debug_is_off(key, why):
    result = load_settings(SECRET_KEY=key, DLQADMIN_ENCRYPTION_KEY=FERNET_KEY)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: SECRET_KEY {why}: refused when DEBUG is off" in result.stderr
    command = result.stderr.split("generate one with: ", 1)[1].splitlines()[0]
    generated = subprocess.run(command, shell=True, capture_output=True, text=True, check=True).stdout.strip()
    assert load_settings(SECRET_KEY=generated, DLQADMIN_ENCRYPTION_KEY=FERNET_KEY).returncode == 0


def test_debug_accepts_any_secret_key():
    assert load_settings(DEBUG="true", SECRET_KEY="change-me").returncode == 0


@pytest.mark.parametrize("name", ["DLQADMIN_TRUSTED_PROXIES", "DLQADMIN_METRICS_ALLOWED_NETS"])
def test_a_malformed_network_list_refuses_to_start(name):
    result = load_settings(DEBUG="true", **{name: "10.0.0.0/8, 10.1.0.0/33"})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name}: '10.1.0.0/33' is not an IP address or network" in result.stderr
    assert "comma-separated CIDRs such as 10.0.0.0/8" in result.stderr
    assert load_settings(DEBUG="true", **{name: "10.0.0.0/8, 192.0.2.7,2001:db8::/32"}).returncode == 0


def test_a_malformed_boolean_is_a_clear_error():
    result = load_settings(DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


@pytest.mark.parametrize("url", ["sqlite:///var/demo.sqlite3", "mysql://root@127.0.0.1:3306/dlqadmin"])
def test_it_refuses_any_database_but_postgresql(url):
    result = load_settings(DEBUG="true", DATABASE_URL=url)
    assert result.returncode != 0
    assert "ImproperlyConfigured: DATABASE_URL must point at PostgreSQL" in result.stderr, result.stderr


def test_a_database_url_of_no_known_kind_is_a_clear_error():
    result = load_settings(DEBUG="true", DATABASE_URL="postgress://db/dlqadmin")
    assert result.returncode != 0
    assert "ImproperlyConfigured: DATABASE_URL is not a PostgreSQL URL" in result.stderr, result.stderr


@pytest.mark.parametrize("debug", ["true", "false"])
def test_without_database_url_it_refuses_and_points_at_make_demo(debug):
    result = load_settings(
        DEBUG=debug, SECRET_KEY=GOOD_KEY, DLQADMIN_ENCRYPTION_KEY=FERNET_KEY, DATABASE_URL=None
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: DATABASE_URL is required" in result.stderr, result.stderr
    assert "`make demo` starts an embedded PostgreSQL" in result.stderr


def test_a_postgresql_url_is_taken_as_it_is():
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.db import connection; "
         "d = connection.settings_dict; print(d['ENGINE'], d['NAME'], d['PORT'])"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "dlqadmin.settings", "DEBUG": "true",
             "DATABASE_URL": "postgres://u:p@127.0.0.1:15432/dlqadmin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.postgresql", "dlqadmin", "15432"]


@pytest.mark.django_db
def test_database_sessions_plan_serially_without_jit():
    """Short indexed queries: a parallel plan made the 1M-row header filter 3x slower."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('max_parallel_workers_per_gather'), current_setting('jit')")
        assert cursor.fetchone() == ("0", "off")


def test_database_session_options_can_be_changed_or_dropped():
    def options(value):
        result = subprocess.run(
            [sys.executable, "-c", "import django; django.setup(); from django.db import connection; "
             "print(repr(connection.settings_dict['OPTIONS'].get('options')))"],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "dlqadmin.settings", "DEBUG": "true",
                 "DATABASE_URL": "postgres://u:p@127.0.0.1:15432/dlqadmin", "DB_SESSION_OPTIONS": value},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert options("-c jit=on") == "'-c jit=on'"
    assert options("") == "None"


def test_every_response_carries_a_csp_without_inline_script(client):
    response = client.get("/healthz")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_a_partition_size_below_one_id_refuses_to_start():
    result = load_settings(
        SECRET_KEY=GOOD_KEY, DLQADMIN_ENCRYPTION_KEY=FERNET_KEY, DLQADMIN_PARTITION_SIZE="0"
    )
    assert result.returncode != 0
    assert "DLQADMIN_PARTITION_SIZE must be a positive number of ids" in result.stderr
