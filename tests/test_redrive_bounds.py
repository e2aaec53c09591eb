"""Every surface that starts a redrive (dashboard form, API, Django admin, ``manage.py redrive``)
refuses the same out-of-bound option and the same oversized id selection with the one message of
dlqadmin.services.redrive.options, and accepts the same largest values."""

import html
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from dlqadmin.models import AuditEvent, DeadLetter, RedriveJob, Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import dead_letters_store
from dlqadmin.services.redrive import options as bounds
from tests.api.conftest import token_client
from tests.conftest import AMQP_URL
from tests.views.conftest import harvested

pytestmark = pytest.mark.django_db
SURFACES = ["dashboard", "api", "cli"]


@pytest.fixture
def source():
    conn = connection_create(name="rmq", kind="rabbitmq", url=AMQP_URL, username="guest", password="guest")
    return Source.objects.create(connection=conn, name="orders-dlq", mode="queue", address="orders.dlq")


def store(source, count: int) -> list[int]:
    """``count`` dead letters stored through the harvest sink, in batches as the harvester does."""
    ids: list[int] = []
    while len(ids) < count:
        batch = [harvested() for _ in range(min(2000, count - len(ids)))]
        ids += dead_letters_store(source=source, batch=batch).inserted_ids
    return ids


def submit(surface: str, user, *, ids: list[int], dry_run: bool = False, **options) -> tuple[bool, str]:
    """Ask ``surface`` for a redrive of ``ids`` with ``options``: (accepted, what it answered)."""
    if surface == "dashboard":
        client = Client()
        client.force_login(user)
        data = {"ids": ids, "batch_size": str(options.pop("batch_size", bounds.DEFAULT_BATCH))}
        data.update({k: str(v) for k, v in options.items()})
        if not dry_run:
            data["confirm"] = "1"
        response = client.post("/redrive/", data)
        ok = response.status_code == (200 if dry_run else 302)
        return ok, html.unescape(response.content.decode())
    if surface == "api":
        response = token_client(user).post(
            "/api/v1/redrives/", {"ids": ids, "dry_run": dry_run, **options}, format="json"
        )
        return response.status_code == (200 if dry_run else 201), response.content.decode()
    args = ["redrive", "--ids", ",".join(map(str, ids))]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    if dry_run:
        args.append("--dry-run")
    out = StringIO()
    try:
        call_command(*args, stdout=out, stderr=out)
    except CommandError as exc:
        return False, str(exc)
    return True, out.getvalue()


OUT_OF_BOUNDS = [
    ("velocity", bounds.MAX_VELOCITY + 1, bounds.VELOCITY_MESSAGE),
    ("velocity", bounds.MIN_VELOCITY / 2, bounds.VELOCITY_MESSAGE),
    ("batch_size", bounds.MAX_BATCH + 1, bounds.BATCH_MESSAGE),
    ("batch_size", 0, bounds.BATCH_MESSAGE),
]


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize(("option", "value", "message"), OUT_OF_BOUNDS)
def test_every_surface_refuses_the_same_out_of_bound_option_with_the_same_message(
    surface, option, value, message, operator, source
):
    ids = store(source, 1)
    accepted, answer = submit(surface, operator, ids=ids, **{option: value})
    assert not accepted and message in answer, answer
    assert not RedriveJob.objects.exists()


@pytest.mark.parametrize("surface", SURFACES)
def test_every_surface_accepts_the_largest_velocity_and_batch_size(surface, operator, source):
    ids = store(source, 1)
    accepted, answer = submit(
        surface, operator, ids=ids, velocity=bounds.MAX_VELOCITY, batch_size=bounds.MAX_BATCH
    )
    assert accepted, answer
    job = RedriveJob.objects.get()
    assert (job.velocity, job.batch_size, job.total) == (bounds.MAX_VELOCITY, bounds.MAX_BATCH, 1)
    accepted, answer = submit(surface, operator, ids=store(source, 1), velocity=bounds.MIN_VELOCITY)
    assert accepted, answer
    assert RedriveJob.objects.order_by("-id")[0].velocity == bounds.MIN_VELOCITY


@pytest.mark.parametrize("surface", SURFACES)
def test_every_surface_takes_at_most_the_one_id_limit(surface, operator):
    """Checked before the database: the ids need not exist."""
    too_many = list(range(1, bounds.MAX_SELECTION_IDS + 2))
    accepted, answer = submit(surface, operator, ids=too_many, dry_run=True)
    assert not accepted and bounds.ids_message(bounds.MAX_SELECTION_IDS + 1) in answer, answer[:2000]
    accepted, answer = submit(surface, operator, ids=too_many[:-1], dry_run=True)
    assert "messages by id" not in answer, answer[:2000]


def test_the_service_refuses_more_ids_than_the_limit_for_any_other_caller(source):
    from dlqadmin.services.redrive.jobs import RedriveError, redrive_plan

    with pytest.raises(RedriveError) as refused:
        redrive_plan(ids=list(range(1, bounds.MAX_SELECTION_IDS + 2)))
    assert refused.value.errors == {"ids": bounds.ids_message(bounds.MAX_SELECTION_IDS + 1)}


def test_a_dashboard_selection_of_the_largest_size_fits_in_one_post(settings):
    assert settings.DATA_UPLOAD_MAX_NUMBER_FIELDS > bounds.MAX_SELECTION_IDS + 50


@pytest.fixture
def staff_operator(operator):
    operator.is_staff = True
    operator.save()
    operator.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_deadletter", "view_errorgroup"])
    )
    client = Client()
    client.force_login(operator)
    return client


def admin_action(client, action: str, model: str = "deadletter", **extra):
    any_one = DeadLetter.objects.values_list("pk", flat=True)[:1]
    data = {"action": action, "_selected_action": list(any_one), **extra}
    return client.post(reverse(f"admin:dlqadmin_{model}_changelist"), data, follow=True)


def test_the_admin_takes_at_most_the_one_id_limit_and_says_how_to_redrive_more(staff_operator, source):
    ids = store(source, bounds.MAX_SELECTION_IDS + 1)
    page = html.unescape(admin_action(staff_operator, "redrive_selected", select_across="1").content.decode())
    assert bounds.ids_message(bounds.MAX_SELECTION_IDS + 1) in page and "select all matching" in page
    assert not RedriveJob.objects.exists() and not AuditEvent.objects.filter(action="redrive.create").exists()
    DeadLetter.objects.filter(pk=ids[-1]).delete()
    page = admin_action(staff_operator, "redrive_selected", select_across="1").content.decode()
    job = RedriveJob.objects.get()
    assert job.total == bounds.MAX_SELECTION_IDS and f"#{job.pk}</a> started" in page


def test_the_admin_redrives_large_error_groups_by_filter_claiming_the_rest_in_the_worker(
    staff_operator, source, settings
):
    settings.DLQADMIN_REDRIVE_CLAIM_IN_REQUEST = 50
    store(source, 120)
    group = source.error_groups.get()
    page = admin_action(
        staff_operator, "redrive_groups", model="errorgroup", _selected_action=[group.pk]
    ).content.decode()
    job = RedriveJob.objects.get()
    assert job.filter["error_group"] == [group.pk] and job.claiming
    assert job.attempts.count() == 50  # the request claimed its share; the worker claims the rest
    assert "the worker gathers the rest" in page


def test_the_api_takes_exactly_the_destination_and_header_policy_keys_of_the_one_definition():
    from dlqadmin.api.serializers.redrives import DestinationSerializer, HeaderPolicySerializer

    assert set(DestinationSerializer().fields) == bounds.DESTINATION_KEYS
    assert set(HeaderPolicySerializer().fields) == bounds.POLICY_KEYS


def test_the_dashboard_form_builds_only_keys_of_the_one_definition():
    from dlqadmin.forms import RedriveForm

    form = RedriveForm(
        {
            "batch_size": "10",
            "rabbit_route": "custom",
            "exchange": "x",
            "routing_key": "k",
            "topic": "t",
            "partition": "1",
            "subject": "s",
            "strip": "a-",
            "extra": "h=v",
            "keep_diagnostics": "on",
            "spring_retry_count": "on",
        }
    )
    assert form.is_valid(), form.errors
    assert set(form.cleaned_data["destination"]) <= bounds.DESTINATION_KEYS
    assert set(form.cleaned_data["header_policy"]) == bounds.POLICY_KEYS
