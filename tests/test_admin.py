"""Django admin: every model is browsable; credentials are write-only; evidence is read-only."""

import pytest
from django.urls import reverse

from dlqadmin.models import Connection, DeadLetter, Source
from dlqadmin.services.connections import connection_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "root-pass-123")
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "model", ["connection", "source", "deadletter", "errorgroup", "redrivejob", "auditevent"]
)
def test_every_model_has_a_changelist(admin_client, model):
    response = admin_client.get(reverse(f"admin:dlqadmin_{model}_changelist"))
    assert response.status_code == 200


def test_the_stored_password_is_never_rendered(admin_client):
    conn = connection_create(
        name="rmq",
        kind="rabbitmq",
        url="amqp://127.0.0.1:5672/",
        username="guest",
        password="p4ss-w0rd-secret",
    )
    page = admin_client.get(reverse("admin:dlqadmin_connection_change", args=[conn.pk])).content.decode()
    assert "p4ss-w0rd-secret" not in page
    assert conn.password_encrypted not in page
    assert 'name="new_password"' in page


def test_a_password_entered_in_the_form_is_stored_encrypted(admin_client):
    response = admin_client.post(
        reverse("admin:dlqadmin_connection_add"),
        {
            "name": "kafka",
            "kind": "kafka",
            "url": "127.0.0.1:9092",
            "username": "svc",
            "options": "{}",
            "tls_verify": "on",
            "new_password": "form-secret-123",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    conn = Connection.objects.get(name="kafka")
    assert conn.password == "form-secret-123" and "form-secret" not in conn.password_encrypted


def test_a_hostile_payload_renders_as_text(admin_client):
    conn = connection_create(name="c", kind="rabbitmq", url="amqp://127.0.0.1:5672/")
    source = Source.objects.create(connection=conn, name="s", mode="queue", address="q")
    letter = DeadLetter.objects.create(
        source=source,
        position="p",
        payload=b'<script>alert(1)</script>"><img>',
        headers=[["x", {"t": "str", "v": "<b onmouseover=alert(2)>"}]],
    )
    page = admin_client.get(reverse("admin:dlqadmin_deadletter_change", args=[letter.pk])).content.decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "<b onmouseover" not in page


def test_dead_letters_cannot_be_edited_or_deleted(admin_client):
    conn = connection_create(name="c", kind="rabbitmq", url="amqp://127.0.0.1:5672/")
    source = Source.objects.create(connection=conn, name="s", mode="queue", address="q")
    letter = DeadLetter.objects.create(source=source, position="p", payload=b"x")
    response = admin_client.post(
        reverse("admin:dlqadmin_deadletter_delete", args=[letter.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert DeadLetter.objects.filter(pk=letter.pk).exists()
