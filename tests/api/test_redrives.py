"""redrives/: dry-run plans create nothing, jobs are created over the exact set, 409 conflicts,
progress and control. (Sending is covered end to end against the brokers in test_end_to_end.)"""

import pytest

from dlqadmin.models import AuditEvent, DeadLetter, RedriveAttempt, RedriveJob, RedriveJobStatus

pytestmark = pytest.mark.django_db

URL = "/api/v1/redrives/"


def test_dry_run_returns_the_plan_and_creates_nothing(as_operator, store):
    body = {"filter": {"connection": "kafka"}, "dry_run": True}
    response = as_operator.post(URL, body, format="json")
    assert response.status_code == 200, response.content
    plan = response.json()
    assert plan["dry_run"] is True
    assert (plan["total"], plan["redrivable"], plan["parked"], plan["busy"]) == (3, 2, 1, 0)
    assert plan["needs_destination"] == 0
    assert plan["routes"] == {"origin": 2, "original_route": 0, "override": 0, "needs_destination": 0}
    assert plan["destinations"] == [  # the parked one goes nowhere unless the loop guard is overridden
        {
            "kind": "kafka",
            "source": "payments",
            "route": "origin",
            "destination": "payments",
            "reason": "",
            "count": 2,
        }
    ]
    assert plan["filter"] == {"connection": ["kafka"], "max_id": DeadLetter.objects.order_by("-id")[0].pk}
    assert not RedriveJob.objects.exists() and not RedriveAttempt.objects.exists()
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {"new", "redriven", "failed", "parked"}
    response = as_operator.post(URL, {"ids": [store["a"].pk], "dry_run": True}, format="json")
    assert response.json()["ids_count"] == 1 and response.json()["total"] == 1


def test_a_job_claims_the_selection_and_a_second_job_on_it_is_409(as_operator, store):
    body = {
        "ids": [store["a"].pk, store["c"].pk],
        "batch_size": 10,
        "velocity": 5,
        "destination": {"topic": "x"},
    }
    response = as_operator.post(URL, body, format="json")
    assert response.status_code == 201, response.content
    job = response.json()
    assert job["status"] == "pending" and job["total"] == 2 and job["created_by"] == "operator"
    assert job["claiming"] is False
    assert job["velocity"] == 5 and job["destination"] == {"topic": "x"} and job["failures"] == []
    assert job["progress"] == {
        "done": 0,
        "remaining": 2,
        "percent": 0.0,
        "rate_per_second": None,
        "eta_seconds": None,
    }
    assert set(DeadLetter.objects.filter(status="queued").values_list("position", flat=True)) == {"a", "c"}
    assert AuditEvent.objects.filter(action="redrive.create", count=2).exists()

    response = as_operator.post(URL, {"ids": [store["a"].pk]}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == (
        f"selection: every selected message is already in an active redrive job (#{job['id']})"
    )
    assert RedriveJob.objects.count() == 1


def test_a_filter_larger_than_the_request_claim_is_claimed_by_the_worker(as_operator, store, settings):
    settings.DLQADMIN_REDRIVE_CLAIM_IN_REQUEST = 1
    response = as_operator.post(
        URL, {"filter": {"connection": "kafka"}, "override_loop_guard": True}, format="json"
    )
    assert response.status_code == 201, response.content
    job = response.json()
    assert job["claiming"] is True and job["total"] == 3  # the plan's estimate
    assert RedriveAttempt.objects.filter(job_id=job["id"]).count() == 1
    assert as_operator.get(f"{URL}{job['id']}/").json()["claiming"] is True


def test_nothing_matching_is_400(as_operator, store):
    response = as_operator.post(URL, {"filter": {"reason": "nope"}}, format="json")
    assert response.status_code == 400 and "selection" in response.json()["fields"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "ids"),
        ({"ids": [1], "filter": {"status": "new"}}, "ids"),
        ({"ids": ["one"]}, "ids.0"),
        ({"ids": list(range(1, 10_002))}, "ids"),
        ({"filter": {"since": "soon"}}, "filter.since"),
        ({"filter": {"status": "new"}, "velocity": 0}, "velocity"),
        ({"filter": {"status": "new"}, "velocity": "fast"}, "velocity"),
        ({"filter": {"status": "new"}, "batch_size": 0}, "batch_size"),
        ({"filter": {"status": "new"}, "batch_size": 5000}, "batch_size"),
        ({"filter": {"status": "new"}, "destination": {"queue": "x"}}, "destination.queue"),
        ({"filter": {"status": "new"}, "destination": {"partition": -1}}, "destination.partition"),
        ({"filter": {"status": "new"}, "destination": "orders"}, "destination"),
        ({"filter": {"status": "new"}, "header_policy": {"strip": "x-"}}, "header_policy.strip"),
        ({"filter": {"status": "new"}, "header_policy": {"drop": []}}, "header_policy.drop"),
        ({"filter": {"status": "new"}, "dry_run": "perhaps"}, "dry_run"),
        ({"filter": {"status": "new"}, "override_loop_guard": []}, "override_loop_guard"),
    ],
)
def test_bad_redrive_requests_are_400(as_operator, store, body, field):
    for dry_run in (False, True):
        response = as_operator.post(URL, {"dry_run": dry_run, **body}, format="json")
        assert response.status_code == 400, response.content
        assert field in response.json()["fields"], response.json()
    assert not RedriveJob.objects.exists()


def test_pause_resume_cancel_and_409_when_the_state_does_not_allow(as_operator, store):
    job = as_operator.post(URL, {"filter": {"source": "orders"}}, format="json").json()
    url = f"{URL}{job['id']}/"
    assert as_operator.post(f"{url}resume/").status_code == 409
    assert as_operator.post(f"{url}pause/").json()["status"] == "paused"
    response = as_operator.post(f"{url}pause/")
    assert response.status_code == 409 and response.json()["error"].startswith("status: job is paused")
    assert as_operator.post(f"{url}resume/").json()["status"] == "running"
    assert as_operator.post(f"{url}cancel/").json()["status"] == "cancelling"
    RedriveJob.objects.filter(pk=job["id"]).update(status=RedriveJobStatus.CANCELLED)
    assert as_operator.post(f"{url}cancel/").status_code == 409
    assert as_operator.post(f"{URL}999999/cancel/").status_code == 404
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"redrive.pause", "redrive.resume", "redrive.cancel"} <= actions


def test_list_filters_by_status_and_detail_shows_failures(as_operator, as_viewer, store):
    first = as_operator.post(URL, {"ids": [store["a"].pk]}, format="json").json()
    second = as_operator.post(URL, {"ids": [store["c"].pk]}, format="json").json()
    as_operator.post(f"{URL}{second['id']}/pause/")
    assert [j["id"] for j in as_viewer.get(URL).json()["results"]] == [second["id"], first["id"]]
    assert [j["id"] for j in as_viewer.get(f"{URL}?status=paused").json()["results"]] == [second["id"]]
    assert as_viewer.get(f"{URL}?status=bogus").status_code == 400
    assert "failures" not in as_viewer.get(URL).json()["results"][0]
    RedriveAttempt.objects.filter(job_id=first["id"]).update(status="failed", error="permanent: NOT_FOUND")
    detail = as_viewer.get(f"{URL}{first['id']}/").json()
    assert detail["failures"][0]["reason"] == "permanent: NOT_FOUND"
    assert detail["failures"][0]["message"] == store["a"].pk
    assert as_viewer.get(f"{URL}?cursor=garbage").status_code == 400
