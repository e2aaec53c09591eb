"""Settings come from the environment and refuse insecure production setups."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_settings(**env):
    clean = {
        k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DLQADMIN_ENCRYPTION_KEY"}
    }
    clean.update(env)
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
    result = load_settings(SECRET_KEY="s3cret")
    assert result.returncode != 0
    assert "DLQADMIN_ENCRYPTION_KEY is required" in result.stderr


def test_debug_is_off_unless_asked_for():
    result = load_settings(SECRET_KEY="s3cret", DLQADMIN_ENCRYPTION_KEY="k")
    assert result.returncode == 0, result.stderr
    assert "DEBUG False" in result.stdout


def test_secret_key_can_come_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
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
            "DLQADMIN_ENCRYPTION_KEY": "k",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from-a-file"


def test_a_malformed_boolean_is_a_clear_error():
    result = load_settings(DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_every_response_carries_a_csp_without_inline_script(client):
    response = client.get("/healthz")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
