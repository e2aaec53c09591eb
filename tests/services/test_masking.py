"""Masking rules and per-source visibility."""

import json

import pytest
from django.core.exceptions import ValidationError

from brokers import headers
from dlqadmin.masking import mask_key, mask_payload, mask_properties, masked_for
from dlqadmin.models import DeadLetter, MaskingRule, Source
from dlqadmin.selectors import dead_letters_for, visible_sources
from dlqadmin.services.connections import connection_create
from dlqadmin.services.masking import view_of

pytestmark = pytest.mark.django_db

ORDER = {
    "id": 7,
    "customer": {"email": "ann@example.com", "name": "Ann"},
    "items": [{"sku": "A", "card": "4111 1111 1111 1111"}, {"sku": "B", "card": "5500 0000 0000 0004"}],
    "auth": {"nested": {"password": "hunter2"}},
}


@pytest.fixture
def source():
    conn = connection_create(name="rmq", kind="rabbitmq", url="amqp://127.0.0.1:5672/")
    return Source.objects.create(connection=conn, name="orders", mode="queue", address="orders.dlq")


def rule(name, kind, pattern, **kw):
    return MaskingRule.objects.create(name=name, kind=kind, pattern=pattern, **kw)


def test_json_paths_mask_exact_keys_wildcards_and_any_depth():
    rules = [
        rule("email", "json_path", "customer.email"),
        rule("cards", "json_path", "items.*.card"),
        rule("pw", "json_path", "**.password"),
    ]
    masked = json.loads(mask_payload(json.dumps(ORDER).encode(), rules))
    assert masked["customer"] == {"email": "***", "name": "Ann"}
    assert [i["card"] for i in masked["items"]] == ["***", "***"] and masked["items"][0]["sku"] == "A"
    assert masked["auth"]["nested"]["password"] == "***"
    assert masked["id"] == 7


def test_regexes_mask_text_and_binary_is_hidden_when_text_rules_exist():
    rules = [rule("cards", "regex", r"\b\d(?:[ -]?\d){12,15}\b", replacement="[card]")]
    assert mask_payload(b"paid with 4111 1111 1111 1111 ok", rules) == b"paid with [card] ok"
    assert b"4111" not in mask_payload(b"\xff\xfe4111111111111111", rules)


def test_keys_and_broker_properties_are_masked_by_the_same_rules():
    rules = [
        rule("cards", "regex", r"\b\d{16}\b", replacement="[card]"),
        rule("auth", "header", "Authorization", replacement="[auth]"),
    ]
    assert mask_key(b"card-4111111111111111", rules) == b"card-[card]"
    assert mask_key(b"\xff4111111111111111", rules) == b"[binary key hidden by masking rules]"
    assert mask_key(None, rules) is None
    assert mask_key(b"\xff\x00", [rules[1]]) == b"\xff\x00"  # no text rule: nothing to hide
    properties = {
        "correlation_id": "4111111111111111",
        "AUTHORIZATION": "t0k",
        "priority": 5,
        "x": ["4111111111111111"],
    }
    assert mask_properties(properties, rules) == {
        "correlation_id": "[card]",
        "AUTHORIZATION": "[auth]",
        "priority": 5,
        "x": ["[card]"],
    }
    assert properties["correlation_id"] == "4111111111111111"  # the stored row is not changed


def test_a_viewer_sees_masked_payload_headers_and_error_but_an_operator_does_not(source, viewer, operator):
    rule("email", "json_path", "customer.email")
    rule("auth header", "header", "Authorization")
    rule("emails", "regex", r"[\w.]+@[\w.]+", replacement="<email>")
    letter = DeadLetter.objects.create(
        source=source,
        position="p",
        payload=json.dumps(ORDER).encode(),
        headers=headers.encode_mapping({"Authorization": "Bearer s3cret", "tenant": "acme"}),
        error_message="no account for ann@example.com",
    )
    seen = view_of(letter, viewer)
    assert masked_for(viewer) and seen.masked
    assert b"ann@example.com" not in seen.payload and json.loads(seen.payload)["customer"]["email"] == "***"
    assert (
        headers.get(seen.headers, "Authorization") == "***" and headers.get(seen.headers, "tenant") == "acme"
    )
    assert seen.error_message == "no account for <email>"
    full = view_of(letter, operator)
    assert not full.masked and full.payload == letter.payload and full.error_message == letter.error_message


def test_rules_can_be_limited_to_sources(source):
    other = Source.objects.create(connection=source.connection, name="other", mode="queue", address="o")
    limited = rule("only orders", "json_path", "customer.email")
    limited.sources.add(source)
    from dlqadmin.services.masking import rules_for

    assert rules_for(source.pk) == [limited] and rules_for(other.pk) == []


@pytest.mark.parametrize(
    ("kind", "pattern"), [("regex", "([unclosed"), ("json_path", "a..b"), ("header", "  ")]
)
def test_bad_rules_are_rejected(kind, pattern):
    with pytest.raises(ValidationError):
        MaskingRule(name="x", kind=kind, pattern=pattern).full_clean()


def test_restricted_sources_are_invisible_to_other_users(
    source, viewer, operator, admin_user, django_user_model
):
    from django.contrib.auth.models import Group

    secret = Source.objects.create(connection=source.connection, name="payroll", mode="queue", address="pay")
    team = Group.objects.create(name="payroll-team")
    secret.allowed_groups.add(team)
    DeadLetter.objects.create(source=source, position="a")
    DeadLetter.objects.create(source=secret, position="b")
    assert set(visible_sources(viewer).values_list("name", flat=True)) == {"orders"}
    assert list(dead_letters_for(viewer).values_list("position", flat=True)) == ["a"]
    operator.groups.add(team)
    assert set(visible_sources(operator).values_list("name", flat=True)) == {"orders", "payroll"}
    assert dead_letters_for(admin_user).count() == 2
    stranger = django_user_model.objects.create_user("stranger", password="pass-123-word")
    assert dead_letters_for(stranger).count() == 0


def test_exports_are_masked_for_a_masked_user_and_lossless_for_the_system(source, viewer, operator):
    import base64

    from dlqadmin.services.export import ImportError_, import_jsonl, iter_csv, iter_jsonl

    rule("email", "json_path", "customer.email")
    rule("auth header", "header", "Authorization")
    rule("emails", "regex", r"[\w.]+@[\w.]+", replacement="<email>")
    DeadLetter.objects.create(
        source=source,
        position="p",
        payload=json.dumps(ORDER).encode(),
        headers=headers.encode_mapping({"Authorization": "Bearer s3cret"}),
        error_message="no account for ann@example.com",
        stacktrace="at ann@example.com",
        read_notes=["could not read x-reply-to: ann@example.com is not a queue"],
    )
    qs = DeadLetter.objects.all()
    (line,) = list(iter_jsonl(qs, user=viewer))
    record = json.loads(line)
    assert record["masked"] is True and "ann@example.com" not in line and "s3cret" not in line
    assert record["read_notes"] == ["could not read x-reply-to: <email> is not a queue"]
    assert json.loads(base64.b64decode(record["payload_b64"]))["customer"]["email"] == "***"
    assert "ann@example.com" not in "".join(iter_csv(qs, user=viewer))
    for user in (None, operator):  # the system (CLI) and an unmasked user: lossless
        record = json.loads(next(iter_jsonl(qs, user=user)))
        assert (
            record["masked"] is False
            and base64.b64decode(record["payload_b64"]) == json.dumps(ORDER).encode()
        )
        assert record["read_notes"] == ["could not read x-reply-to: ann@example.com is not a queue"]
    with pytest.raises(ImportError_, match="masked export cannot be imported"):
        import_jsonl([line], source=source)
