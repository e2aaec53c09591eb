"""The generated OpenAPI schema is valid, and schemathesis finds no server error in the API.

Schemathesis generates requests from the schema, authenticated as an admin with a token, over
every operation and method (GET, POST, PUT, PATCH, DELETE), and checks that no answer is a 5xx
and that answers match the documented schemas. Two runs:

* ``test_no_request_makes_the_api_fail``: each operation on its own (random ids mostly 404).
* ``test_no_workflow_makes_the_api_fail``: stateful; the OpenAPI links (declared in
  dlqadmin/api/schema.py, plus those schemathesis infers) feed the ids of created connections,
  sources, tokens, rules, listed messages and redrive jobs into the next requests, so updates,
  deletes, revokes, redrives and status changes reach real rows.

The operations that call a broker (health, discover, harvest) are included. They reach only the
brokers on this machine: before such a call the harness points a connection whose URL names
another host at the local broker of its kind (its fuzzed TLS, credentials and options are kept),
so no run depends on DNS or a remote host, and every broker call is bounded by the service's
timeout. For them a 502/503 (the broker refused / is unreachable, documented) is an answer; a
500 never is.
"""

import json
import os
import re
from urllib.parse import urlsplit

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from drf_spectacular.validation import validate_schema
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import stateful
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dlqadmin.models import ApiToken, Connection
from dlqadmin.services.tokens import token_create
from tests.conftest import AMQP_URL, KAFKA_BOOTSTRAP, NATS_URL, unique
from tests.support import rabbit

pytestmark = pytest.mark.django_db

BROKER_CALLS = re.compile(r"/(health|discover|harvest)/$")
LOCAL_BROKERS = {"rabbitmq": AMQP_URL, "kafka": KAFKA_BOOTSTRAP, "nats": NATS_URL}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@schemathesis.check
def no_server_fault(ctx, response, case):
    """Never a 500. A broker operation may answer 502/503: the broker refused or is unreachable
    (documented on those operations); anywhere else every 5xx is a failure."""
    if BROKER_CALLS.search(case.operation.path) and response.status_code in (502, 503):
        return True
    return not_a_server_error(ctx, response, case)


#: no 5xx, and every answer is documented (status, content type, body schema). Not run:
#: positive_data_acceptance, which cannot know that "exactly one of ids / filter" or an opaque
#: cursor make some schema-valid requests a 400.
CHECKS = [no_server_fault, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def admin_token(admin_user):
    return token_create(user=admin_user, name="schemathesis")


@pytest.fixture
def admin_key(admin_token):
    return admin_token[1]


@pytest.fixture
def local_brokers(as_admin):
    """A connection to each local broker and a source on each, added through the API; the
    RabbitMQ source is a real dead-letter queue holding two messages, so a harvest stores rows."""
    top = rabbit.dead_letter(2)
    bodies = [
        ({"kind": "rabbitmq", "url": AMQP_URL, "username": "guest", "password": "guest"}, "queue", top.dlq),
        ({"kind": "kafka", "url": KAFKA_BOOTSTRAP}, "topic", unique("fuzz-dlt").replace(".", "-")),
        ({"kind": "nats", "url": NATS_URL}, "dlq_stream", unique("FUZZ").replace(".", "_")),
    ]
    for body, mode, address in bodies:
        created = as_admin.post("/api/v1/connections/", {"name": unique("c"), **body}, format="json")
        assert created.status_code == 201, created.content
        source = {"name": unique("s"), "connection": created.json()["id"], "mode": mode, "address": address}
        response = as_admin.post("/api/v1/sources/", source, format="json")
        assert response.status_code == 201, response.content
    yield
    rabbit.delete(top)


@pytest.fixture(autouse=True)
def api_under_test(settings, store, local_brokers):
    """Requests reach the real WSGI application (minus the per-request connection closing that
    would end the test's transaction; Django's test client disconnects the same signal)."""
    settings.ALLOWED_HOSTS = ["*"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"dlq-user": "100000/min", "dlq-anon": "100000/min"},
    }
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def generated_schema() -> dict:
    """The schema exactly as /api/v1/schema/ serves it (generated without a request)."""
    raw = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(raw, renderer_context={}))


def test_the_schema_is_valid_openapi(as_viewer):
    response = as_viewer.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    paths = set(schema["paths"])
    for expected in (
        "/api/v1/connections/{id}/health/",
        "/api/v1/connections/{id}/discover/",
        "/api/v1/sources/{id}/harvest/",
        "/api/v1/messages/discard/",
        "/api/v1/messages/resolve/",
        "/api/v1/redrives/{id}/cancel/",
        "/api/v1/redrives/{id}/pause/",
        "/api/v1/redrives/{id}/resume/",
        "/api/v1/error-groups/{id}/status/",
        "/api/v1/audit-events/",
        "/api/v1/tokens/{id}/revoke/",
    ):
        assert expected in paths
    assert "tokenAuth" in schema["components"]["securitySchemes"]
    connection = schema["components"]["schemas"]["Connection"]["properties"]
    assert connection["password"]["writeOnly"] is True and connection["has_password"]["readOnly"] is True
    source = schema["components"]["schemas"]["Source"]["properties"]
    assert "group_id" in source["options"]["properties"] and "address" in source
    assert as_viewer.get("/api/v1/docs/").status_code == 200


def test_the_schema_links_created_ids_to_the_operations_that_use_them(as_viewer):
    paths = as_viewer.get("/api/v1/schema/?format=json").json()["paths"]
    created_connection = paths["/api/v1/connections/"]["post"]["responses"]["201"]["links"]
    assert created_connection["CreateSource"] == {
        "operationId": "sources_create",
        "requestBody": {"connection": "$response.body#/id"},
        "description": created_connection["CreateSource"]["description"],
    }
    listed = paths["/api/v1/messages/"]["get"]["responses"]["200"]["links"]
    assert listed["RedriveThem"]["requestBody"] == {"ids": ["$response.body#/results/0/id"]}
    assert "RevokeIt" in paths["/api/v1/tokens/"]["post"]["responses"]["201"]["links"]


def _hosts(url: str) -> set[str]:
    hosts = set()
    for item in url.split(","):
        item = item.strip()
        try:
            hosts.add(urlsplit(item if "://" in item else f"//{item}").hostname or "")
        except ValueError:
            hosts.add("")
    return hosts


def keep_broker_calls_local(case) -> None:
    """Before health/discover/harvest: a connection whose URL names another host than this
    machine is pointed at the local broker of its kind (everything else it has is kept)."""
    if not BROKER_CALLS.search(case.operation.path):
        return
    raw = str((case.path_parameters or {}).get("id", ""))
    if not (raw.isascii() and raw.isdigit()) or int(raw) > 2**63 - 1:
        return
    if "/sources/" in case.operation.path:
        connection = Connection.objects.filter(sources__pk=int(raw)).first()
    else:
        connection = Connection.objects.filter(pk=int(raw)).first()
    if connection is not None and not _hosts(connection.url) <= LOOPBACK:
        Connection.objects.filter(pk=connection.pk).update(url=LOCAL_BROKERS[connection.kind])


def make_schema():
    loaded = schemathesis.openapi.from_dict(generated_schema()).exclude(path_regex=r"/schema/$")
    loaded.app = get_wsgi_application()
    # Fuzzing only by default: the coverage phase's boundary cases triple the run time on a 2-core
    # machine (the boundaries that matter - ids, page sizes, cursors, NUL, nesting - have explicit
    # tests). DLQ_SCHEMATHESIS_COVERAGE=1 adds it for a thorough run.
    loaded.config.phases.coverage.enabled = os.environ.get("DLQ_SCHEMATHESIS_COVERAGE") == "1"
    # workflows send valid requests (the single-operation run covers invalid ones), so they get
    # past validation and change real rows
    loaded.config.phases.stateful.generation.update(modes=["positive"])
    return loaded


schema = make_schema()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_makes_the_api_fail(case, admin_key):
    keep_broker_calls_local(case)
    case.call_and_validate(headers={"Authorization": f"Token {admin_key}"}, checks=CHECKS)


#: scenarios x steps: bounded so the run stays well under a minute on a loaded 2-core machine;
#: DLQ_SCHEMATHESIS_SCENARIOS raises it for a longer hunt
SCENARIOS = int(os.environ.get("DLQ_SCHEMATHESIS_SCENARIOS", "80"))
STEPS = 15


@pytest.fixture
def every_list_starts_workflows(monkeypatch):
    """Schemathesis starts workflows only at lists and creates whose filters it believes it can
    fill; GET /messages/ (filters by source, connection and error group, which no POST creates)
    would never start one, so no workflow would redrive, discard or edit a listed message."""
    classify = stateful.classify_root_transitions

    def with_every_list(*args):
        roots = classify(*args)
        roots.reliable |= {label for label in roots.fallback if label.startswith("GET ") and "{" not in label}
        return roots

    monkeypatch.setattr(stateful, "classify_root_transitions", with_every_list)


def test_no_workflow_makes_the_api_fail(admin_token, every_list_starts_workflows):
    token, key = admin_token
    answered: list[tuple[str, str, int]] = []

    class ApiWorkflow(schema.as_state_machine()):
        def setup(self):
            # every scenario starts from the fixtures' rows (a savepoint rolled back at its end),
            # so Hypothesis can replay and shrink a failing one
            self.scenario = transaction.atomic()
            self.scenario.__enter__()

        def teardown(self):
            transaction.set_rollback(True)
            self.scenario.__exit__(None, None, None)

        def before_call(self, case):
            # the fuzzer revokes every token it lists, its own included; it keeps working as admin
            ApiToken.objects.filter(pk=token.pk).update(revoked_at=None)
            keep_broker_calls_local(case)

        def after_call(self, response, case):
            answered.append((case.operation.method.upper(), case.operation.path, response.status_code))
            super().after_call(response, case)

        def get_call_kwargs(self, case):
            return {"headers": {"Authorization": f"Token {key}"}}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None)

    ApiWorkflow.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    # the links did their job: ids from earlier answers (random ids are 404s) reached many
    # operations on one resource, e.g. GET/PATCH messages/{id}, tokens/{id}/revoke, redrives/{id}/pause
    reached = {(method, path) for method, path, status in answered if status < 300 and "{id}" in path}
    assert len(reached) >= 6, sorted(reached)
