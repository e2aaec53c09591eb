"""Web security: sign-in throttling, production settings pass `check --deploy`."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db


def sign_in(client: Client, username: str, password: str) -> bool:
    client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    return "_auth_user_id" in client.session


def test_repeated_failures_lock_the_account_even_for_the_right_password(django_user_model, settings):
    settings.DLQADMIN_LOGIN_MAX_FAILURES = 3
    name = f"alice-{uuid.uuid4().hex[:8]}"
    django_user_model.objects.create_user(name, password="correct-horse-battery", is_staff=True)
    attacker = Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(3):
        assert not sign_in(attacker, name, "wrong-password")
    assert not sign_in(attacker, name, "correct-horse-battery")
    # the lockout is per account too: another address cannot guess either
    assert not sign_in(Client(REMOTE_ADDR="198.51.100.8"), name, "correct-horse-battery")


def test_one_address_guessing_many_accounts_is_locked_out(django_user_model, settings):
    settings.DLQADMIN_LOGIN_MAX_FAILURES = 3
    ip = f"198.51.100.{uuid.uuid4().int % 200 + 20}"
    victim = f"bob-{uuid.uuid4().hex[:8]}"
    django_user_model.objects.create_user(victim, password="correct-horse-battery", is_staff=True)
    guesser = Client(REMOTE_ADDR=ip)
    for i in range(3):
        sign_in(guesser, f"nobody-{i}-{uuid.uuid4().hex[:6]}", "x")
    assert not sign_in(guesser, victim, "correct-horse-battery")
    assert sign_in(Client(REMOTE_ADDR="203.0.113.50"), victim, "correct-horse-battery")


def test_production_settings_pass_the_deploy_checks():
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "x" * 20 + uuid.uuid4().hex + uuid.uuid4().hex,
        "DLQADMIN_ENCRYPTION_KEY": "8Fq1v2o0m0vXH1bFz2C8CkQ6q0m0n7cV9wQe3rT5y7U=",
        "ALLOWED_HOSTS": "dlq.example.com",
    }
    for name in (
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "DJANGO_ALLOW_ASYNC_UNSAFE",
    ):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
