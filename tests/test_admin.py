"""Django admin: every model is browsable; credentials are write-only; evidence is read-only.
It follows the same rules as the dashboard and the API: per-source restrictions on lists, pages
and actions; masked payload, headers and error text (pages, search, exports) for viewers;
connection and source writes through the services (validated, audited)."""

import base64
import json

import pytest
from django.urls import reverse

from brokers import headers as header_codec
from dlqadmin.models import AuditEvent, Connection, DeadLetter, DeadLetterStatus, Source
from dlqadmin.services.connections import connection_create
from tests.conftest import user_in_role
from tests.support.access_world import EMAIL, PAYLOAD, TOKEN, assert_no_secrets, build

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "root-pass-123")
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "model", ["connection", "source", "deadletter", "errorgroup", "redrivejob", "auditevent", "storedschema"]
)
def test_every_model_has_a_changelist(admin_client, model):
    response = admin_client.get(reverse(f"admin:dlqadmin_{model}_changelist"))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("model", "query", "valid"),
    [
        # datetime(99999, ...) raised while querying
        ("connection", "created_at__year=99999", "created_at__year=2026"),
        (
            "redrivejob",
            "created_at__month=13&created_at__year=2026",
            "created_at__month=12&created_at__year=2026",
        ),
        # PostgreSQL text cannot hold NUL
        ("deadletter", "status__exact=%00", "status__exact=new"),
        ("errorgroup", "status__exact=new%00", "status__exact=new"),
        ("alertdelivery", "status__exact=%00", "status__exact=sent"),
    ],
)
def test_list_lookups_the_database_would_refuse_are_an_invalid_lookup_not_a_500(
    admin_client, model, query, valid
):
    url = reverse(f"admin:dlqadmin_{model}_changelist")
    response = admin_client.get(f"{url}?{query}")
    assert response.status_code == 302 and response["Location"] == f"{url}?e=1"
    assert admin_client.get(f"{url}?{valid}").status_code == 200


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


# ---- access control and masking ------------------------------------------------------------
CHANGELIST = "admin:dlqadmin_deadletter_changelist"


@pytest.fixture
def world():
    return build()


@pytest.fixture
def staff(django_user_model, client):
    """``staff(role, *groups) -> Client`` signed in to the admin as a staff user of ``role``."""

    def login(role, *groups):
        user = user_in_role(django_user_model, role)
        user.is_staff = True
        user.save()
        user.groups.add(*groups)
        client.force_login(user)
        client.user = user
        return client

    return login


def shown_ids(response) -> set[int]:
    return {row.pk for row in response.context["cl"].result_list}


def post_action(client, action, ids, url=CHANGELIST):
    return client.post(reverse(url), {"action": action, "_selected_action": ids})


def test_the_changelist_and_pages_leave_restricted_sources_out(world, staff):
    client = staff("operator")
    assert shown_ids(client.get(reverse(CHANGELIST))) == {world.letter.pk}
    response = client.get(reverse("admin:dlqadmin_deadletter_change", args=[world.hidden.pk]))
    assert response.status_code == 302  # "does not exist": the admin's answer for a hidden row
    groups = client.get(reverse("admin:dlqadmin_errorgroup_changelist"))
    assert {g.pk for g in groups.context["cl"].result_list} == {world.letter.error_group_id}
    sources = client.get(reverse("admin:dlqadmin_source_changelist"))
    assert {s.pk for s in sources.context["cl"].result_list} == {world.source.pk}


def test_a_member_of_the_group_sees_the_restricted_source(world, staff):
    client = staff("operator", world.payroll)
    assert shown_ids(client.get(reverse(CHANGELIST))) == {world.letter.pk, world.hidden.pk}


@pytest.mark.parametrize("action", ["discard_selected", "resolve_selected", "redrive_selected"])
def test_actions_never_act_on_messages_of_restricted_sources(world, staff, action):
    client = staff("operator")
    post_action(client, action, [world.hidden.pk])
    assert DeadLetter.objects.get(pk=world.hidden.pk).status == DeadLetterStatus.NEW
    post_action(client, action, [world.hidden.pk, world.letter.pk])
    assert DeadLetter.objects.get(pk=world.hidden.pk).status == DeadLetterStatus.NEW
    assert DeadLetter.objects.get(pk=world.letter.pk).status != DeadLetterStatus.NEW


def test_redriving_a_hidden_error_group_is_impossible(world, staff):
    client = staff("operator")
    post_action(
        client, "redrive_groups", [world.hidden.error_group_id], url="admin:dlqadmin_errorgroup_changelist"
    )
    assert DeadLetter.objects.get(pk=world.hidden.pk).status == DeadLetterStatus.NEW


def test_the_detail_page_is_masked_for_a_viewer(world, staff, client):
    url = reverse("admin:dlqadmin_deadletter_change", args=[world.letter.pk])
    page = staff("viewer").get(url).content.decode()
    assert_no_secrets(page)
    assert "&quot;***&quot;" in page and "Authorization (str): ***" in page
    assert "charge failed for &lt;email&gt; with card [card]" in page
    full = staff("operator").get(url).content.decode()
    assert EMAIL in full and TOKEN in full


def test_the_changelist_and_group_pages_are_masked_for_a_viewer(world, staff):
    client = staff("viewer")
    assert_no_secrets(client.get(reverse(CHANGELIST)).content)
    assert_no_secrets(client.get(reverse("admin:dlqadmin_errorgroup_changelist")).content)
    group = reverse("admin:dlqadmin_errorgroup_change", args=[world.letter.error_group_id])
    assert_no_secrets(client.get(group).content)


def test_a_viewer_cannot_find_masked_error_text_with_the_admin_search(world, staff):
    assert shown_ids(staff("viewer").get(reverse(CHANGELIST), {"q": EMAIL})) == set()
    assert shown_ids(staff("operator").get(reverse(CHANGELIST), {"q": EMAIL})) == {world.letter.pk}


def test_admin_exports_are_masked_for_a_viewer_and_lossless_for_an_operator(world, staff):
    ids = [world.letter.pk, world.hidden.pk]
    response = post_action(staff("viewer"), "export_jsonl", ids)
    (record,) = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert record["id"] == world.letter.pk and record["masked"] is True
    assert_no_secrets(json.dumps(record))
    assert_no_secrets(base64.b64decode(record["payload_b64"]))
    assert header_codec.get(record["headers"], "Authorization") == "***"
    response = post_action(staff("viewer"), "export_csv", ids)
    csv_text = b"".join(response.streaming_content).decode()
    assert_no_secrets(csv_text)
    assert len(csv_text.splitlines()) == 2 and "&lt;" not in csv_text and "<email>" in csv_text
    response = post_action(staff("operator", world.payroll), "export_jsonl", ids)
    records = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert {r["id"] for r in records} == set(ids) and not any(r["masked"] for r in records)
    assert (
        base64.b64decode(next(r for r in records if r["id"] == world.letter.pk)["payload_b64"])
        == PAYLOAD.encode()
    )


# ---- connections and sources go through the services ----------------------------------------------
def test_connections_added_and_changed_in_the_admin_are_audited(staff):
    client = staff("admin")
    form = {"name": "kafka-a", "kind": "kafka", "url": "127.0.0.1:9092", "options": "{}", "tls_verify": "on"}
    response = client.post(reverse("admin:dlqadmin_connection_add"), {**form, "new_password": "pw-secret-1"})
    assert response.status_code == 302, response.content.decode()[:2000]
    connection = Connection.objects.get(name="kafka-a")
    assert connection.password == "pw-secret-1"
    event = AuditEvent.objects.get(action="connection.create", target_id=str(connection.pk))
    assert event.actor == client.user and "pw-secret" not in json.dumps(event.detail)
    url = reverse("admin:dlqadmin_connection_change", args=[connection.pk])
    response = client.post(url, {**form, "url": "127.0.0.1:9093"})
    assert response.status_code == 302, response.content.decode()[:2000]
    connection.refresh_from_db()
    assert connection.url == "127.0.0.1:9093" and connection.password == "pw-secret-1"
    assert AuditEvent.objects.get(action="connection.update").detail["changed"] == ["url"]


def test_sources_added_in_the_admin_are_audited_with_their_access(world, staff):
    client = staff("admin")
    response = client.post(
        reverse("admin:dlqadmin_source_add"),
        {
            **SOURCE_FORM,
            "connection": world.source.connection_id,
            "name": "new",
            "address": "new.dlq",
            "allowed_groups": [world.payroll.pk],
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    source = Source.objects.get(name="new")
    assert list(source.allowed_groups.all()) == [world.payroll]
    assert AuditEvent.objects.filter(action="source.create", target_id=str(source.pk)).exists()
    access = AuditEvent.objects.get(action="source.access", target_id=str(source.pk))
    assert access.detail["groups"] == [world.payroll.name]


SOURCE_FORM = {
    "mode": "queue",
    "options": "{}",
    "enabled": "on",
    "max_redrives": "5",
    "auto_retry_max_attempts": "3",
    "auto_retry_backoff_seconds": "60",
}


def test_the_admin_refuses_a_source_mode_its_broker_does_not_harvest(world, staff):
    client = staff("admin")
    form = {**SOURCE_FORM, "connection": world.source.connection_id}
    response = client.post(
        reverse("admin:dlqadmin_source_add"), {**form, "name": "wrong", "mode": "topic", "address": "t"}
    )
    assert response.status_code == 200
    assert "a RabbitMQ connection harvests queue sources, not &#x27;topic&#x27;" in response.content.decode()
    response = client.post(
        reverse("admin:dlqadmin_source_add"), {**form, "name": "again", "address": world.source.address}
    )
    assert "is already a source of this connection" in response.content.decode()
    assert not Source.objects.filter(name__in=["wrong", "again"]).exists()


def test_a_jobs_page_shows_which_messages_it_holds_and_which_were_busy(admin_client):
    from dlqadmin.models import RedriveJob
    from dlqadmin.services.redrive.jobs import redrive_job_create

    conn = connection_create(name="rmq-hold", kind="rabbitmq", url="amqp://127.0.0.1:5672/")
    source = Source.objects.create(connection=conn, name="hold-dlq", mode="queue", address="hold.dlq")
    a, b = (
        DeadLetter.objects.create(source=source, position=p, payload=b"x", origin_queue="hold.orders")
        for p in "ab"
    )
    first = redrive_job_create(ids=[a.pk])
    second = redrive_job_create(ids=[a.pk, b.pk])
    assert RedriveJob.objects.count() == 2
    page = admin_client.get(reverse("admin:dlqadmin_redrivejob_change", args=[second.pk])).content.decode()
    assert f"busy in job #{first.pk}" in page
    assert "Holds" in page and "Lease expires at" in page


# ---- the schema store goes through its service -------------------------------------------------
ORDERS_PROTO = (
    b'syntax = "proto3";\npackage shop;\nimport "shop/money.proto";\nmessage Order { Money total = 1; }\n'
)
MONEY_PROTO = b'syntax = "proto3";\npackage shop;\nmessage Money { int64 cents = 1; }\n'
SCHEMA_ADD = "admin:dlqadmin_storedschema_add"


def proto_upload(name: str, text: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, text, content_type="text/plain")


def test_an_admin_adds_a_schema_from_proto_files_in_the_admin(world, staff):
    from dlqadmin.decoding.confluent import message_indexes
    from dlqadmin.models import StoredSchema

    client = staff("admin")
    form = {"name": "orders", "kind": "protobuf", "message_type": "shop.Order", "enabled": "on"}
    response = client.post(
        reverse(SCHEMA_ADD),
        {
            **form,
            "definition": "",
            "proto_files": [
                proto_upload("orders.proto", ORDERS_PROTO),
                proto_upload("money.proto", MONEY_PROTO),
            ],
            "sources": [world.source.pk],
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    schema = StoredSchema.objects.get(name="orders")
    assert list(schema.sources.all()) == [world.source]
    loaded = schema.as_schema()
    assert message_indexes(loaded) == [0] and [name for name, _ in loaded.references] == ["shop/money.proto"]
    event = AuditEvent.objects.get(action="schema.create", target_id=str(schema.pk))
    assert event.actor == client.user
    # changed in the admin: audited with what changed, sources unbound
    url = reverse("admin:dlqadmin_storedschema_change", args=[schema.pk])
    response = client.post(
        url, {**form, "definition": schema.definition, "header": "type", "header_value": "pb"}
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    update = AuditEvent.objects.get(action="schema.update", target_id=str(schema.pk))
    assert update.detail["changed"] == ["header", "header_value", "sources"]
    assert not schema.sources.exists()
    # listed, searched and filtered
    changelist = reverse("admin:dlqadmin_storedschema_changelist")
    assert shown_ids(client.get(f"{changelist}?q=shop.Order")) == {schema.pk}
    assert shown_ids(client.get(f"{changelist}?kind__exact=avro")) == set()
    assert shown_ids(client.get(f"{changelist}?kind__exact=protobuf&enabled__exact=1")) == {schema.pk}
    response = client.post(reverse("admin:dlqadmin_storedschema_delete", args=[schema.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="schema.delete", target_id=str(schema.pk)).exists()
    assert not StoredSchema.objects.exists()


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"kind": "avro", "definition": "{broken"}, "Avro schema does not parse"),
        (
            {
                "kind": "protobuf",
                "message_type": "shop.Order",
                "proto_files": [proto_upload("orders.proto", ORDERS_PROTO)],
            },
            "shop/money.proto: File not found.",
        ),
        (
            {
                "kind": "protobuf",
                "message_type": "shop.Order",
                "proto_files": [
                    proto_upload("orders.proto", ORDERS_PROTO.replace(b"package shop;", b"package shop"))
                ],
            },
            "orders.proto:3:1: Expected &quot;;&quot;.",
        ),
        (
            {"kind": "protobuf", "definition": "@@@", "message_type": "shop.Order"},
            "not a base64 FileDescriptorSet",
        ),
        ({"kind": "avro"}, "paste the schema, or choose .proto files"),
    ],
)
def test_the_admin_refuses_a_schema_the_api_would_refuse(world, staff, fields, error):
    from dlqadmin.models import StoredSchema

    client = staff("admin")
    response = client.post(reverse(SCHEMA_ADD), {"name": "bad", "enabled": "on", **fields})
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not StoredSchema.objects.exists()


def test_viewers_see_the_schemas_in_the_admin_but_cannot_add_one(staff):
    client = staff("viewer")
    assert client.get(reverse("admin:dlqadmin_storedschema_changelist")).status_code == 200
    assert client.get(reverse(SCHEMA_ADD)).status_code == 403
