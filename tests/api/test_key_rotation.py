"""Encryption keys: ``generate_encryption_key`` prints a usable key, ``rotate_encryption_key``
re-encrypts every stored credential under the newest key (once, in one transaction)."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from dlqadmin.models import AuditEvent, Connection
from tests.conftest import AMQP_URL, unique

pytestmark = pytest.mark.django_db

CONNECTIONS = "/api/v1/connections/"


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def created(client, **extra) -> Connection:
    body = {"name": unique("rmq"), "kind": "rabbitmq", "url": AMQP_URL, "username": "guest", **extra}
    response = client.post(CONNECTIONS, body, format="json")
    assert response.status_code == 201, response.content
    return Connection.objects.get(pk=response.json()["id"])


def test_generate_encryption_key_prints_a_fernet_key():
    first, second = run("generate_encryption_key").strip(), run("generate_encryption_key").strip()
    assert first != second
    token = Fernet(first.encode()).encrypt(b"x")
    assert Fernet(first.encode()).decrypt(token) == b"x"


def test_rotation_moves_every_credential_to_the_newest_key(as_admin, settings):
    old, new = settings.DLQADMIN_ENCRYPTION_KEY, run("generate_encryption_key").strip()
    Connection.objects.all().delete()
    both = created(as_admin, password="guest", tls_client_key="-----BEGIN PRIVATE KEY-----\nabc\n")
    bare = created(as_admin)

    settings.DLQADMIN_ENCRYPTION_KEY = f"{new},{old}"
    out = run("rotate_encryption_key")
    assert "2 credential(s) re-encrypted under the newest key, 0 already under it, 2 empty, in 2" in out
    event = AuditEvent.objects.get(action="connection.reencrypt")
    assert event.count == 2 and event.actor_name == "system"
    # idempotent: a second run finds everything current
    again = run("rotate_encryption_key")
    assert "0 credential(s) re-encrypted under the newest key, 2 already under it" in again
    assert AuditEvent.objects.filter(action="connection.reencrypt").count() == 1

    settings.DLQADMIN_ENCRYPTION_KEY = new  # the old key is gone
    both.refresh_from_db()
    assert both.password == "guest" and both.tls_client_key.endswith("abc\n")
    health = as_admin.get(f"{CONNECTIONS}{both.pk}/health/").json()
    assert health["ok"] is True, health
    bare.refresh_from_db()
    assert bare.password == ""


def test_a_credential_no_key_decrypts_stops_the_rotation_and_changes_nothing(as_admin, settings):
    old, new = settings.DLQADMIN_ENCRYPTION_KEY, Fernet.generate_key().decode()
    readable = created(as_admin, password="guest")
    stray = created(as_admin, password="guest")
    Connection.objects.filter(pk=stray.pk).update(
        password_encrypted=Fernet(Fernet.generate_key()).encrypt(b"lost").decode()
    )
    before = Connection.objects.get(pk=readable.pk).password_encrypted

    settings.DLQADMIN_ENCRYPTION_KEY = f"{new},{old}"
    why = f"connection '{stray.name}': password_encrypted cannot be decrypted"
    with pytest.raises(CommandError, match=why):
        run("rotate_encryption_key")
    assert Connection.objects.get(pk=readable.pk).password_encrypted == before
    assert not AuditEvent.objects.filter(action="connection.reencrypt").exists()
