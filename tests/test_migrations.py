from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_models_and_migrations_agree():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_0015_gives_each_message_of_an_active_job_one_holder():
    """Rows from before 0015: two active jobs sharing a message (the bug 0015 closes), a finished
    job, a skipped attempt. Afterwards one attempt holds each message an active job still has."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("dlqadmin", "0014_plan_destination")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("dlqadmin")
    executor.migrate(before)
    try:
        apps = executor.loader.project_state(before).apps
        Connection, Source = apps.get_model("dlqadmin", "Connection"), apps.get_model("dlqadmin", "Source")
        DeadLetter, Job = apps.get_model("dlqadmin", "DeadLetter"), apps.get_model("dlqadmin", "RedriveJob")
        Attempt = apps.get_model("dlqadmin", "RedriveAttempt")
        conn = Connection.objects.create(name="m12", kind="rabbitmq", url="amqp://127.0.0.1:5672/")
        source = Source.objects.create(connection=conn, name="m12", mode="queue", address="m12.dlq")
        shared, sent, old, parked = (
            DeadLetter.objects.create(source=source, position=str(i), status="queued") for i in range(4)
        )
        running = Job.objects.create(status="running")
        second = Job.objects.create(status="pending")
        done = Job.objects.create(status="completed")
        rows = {
            "running-shared": Attempt.objects.create(job=running, dead_letter=shared, status="succeeded"),
            "second-shared": Attempt.objects.create(job=second, dead_letter=shared, status="pending"),
            "running-sent": Attempt.objects.create(job=running, dead_letter=sent, status="failed"),
            "done-old": Attempt.objects.create(job=done, dead_letter=old, status="succeeded"),
            "running-parked": Attempt.objects.create(job=running, dead_letter=parked, status="skipped"),
        }
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    finally:
        MigrationExecutor(connection).migrate(latest)
    from dlqadmin.models import RedriveAttempt

    holds = dict(RedriveAttempt.objects.values_list("pk", "holds"))
    assert {name: holds[row.pk] for name, row in rows.items()} == {
        "running-shared": False,
        "second-shared": True,  # the attempt still to send holds the shared message
        "running-sent": True,
        "done-old": False,
        "running-parked": False,
    }
