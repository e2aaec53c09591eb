"""The dashboard's connection form sets a Schema Registry: URL, user and a write-only secret
stored encrypted; a bad registry URL is a form error."""

import pytest
from django.urls import reverse

from dlqadmin.models import AuditEvent, Connection
from tests.conftest import KAFKA_BOOTSTRAP

pytestmark = pytest.mark.django_db


def form_data(**extra) -> dict:
    return {"name": "kafka-sr", "kind": "kafka", "url": KAFKA_BOOTSTRAP, "tls_verify": "on", **extra}


def test_an_admin_sets_a_registry_whose_secret_is_write_only(as_user, admin_user):
    client = as_user(admin_user)
    assert "Schema Registry" in client.get(reverse("dlq-connection-add")).content.decode()
    response = client.post(
        reverse("dlq-connection-add"),
        form_data(
            schema_registry_url="http://127.0.0.1:8081",
            schema_registry_username="sr",
            new_schema_registry_secret="sr-s3cret",
        ),
    )
    assert response.status_code == 302
    connection = Connection.objects.get(name="kafka-sr")
    assert connection.schema_registry_url == "http://127.0.0.1:8081"
    assert connection.schema_registry_secret == "sr-s3cret"
    assert "sr-s3cret" not in connection.schema_registry_secret_encrypted
    edit = client.get(reverse("dlq-connection-edit", args=[connection.pk])).content.decode()
    assert "sr-s3cret" not in edit and connection.schema_registry_secret_encrypted not in edit
    assert "sr-s3cret" not in str(AuditEvent.objects.get(action="connection.create").detail)
    # editing without a secret keeps it; "remove" clears it
    response = client.post(
        reverse("dlq-connection-edit", args=[connection.pk]), form_data(schema_registry_url="")
    )
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.schema_registry_url == "" and connection.schema_registry_secret == "sr-s3cret"
    client.post(
        reverse("dlq-connection-edit", args=[connection.pk]), form_data(clear_schema_registry_secret="on")
    )
    connection.refresh_from_db()
    assert connection.schema_registry_secret == ""


def test_a_bad_registry_url_is_a_form_error(as_user, admin_user):
    response = as_user(admin_user).post(
        reverse("dlq-connection-add"), form_data(schema_registry_url="ftp://registry")
    )
    assert response.status_code == 400, response.status_code
    assert "a Schema Registry URL is http://host:port" in response.content.decode()
    assert not Connection.objects.filter(name="kafka-sr").exists()
