from io import StringIO

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction


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


@pytest.mark.django_db(transaction=True)
def test_0016_moves_each_dead_letter_into_state_and_body_and_indexes_its_text():
    """Rows from before 0016 keep their ids, states, bodies and tallies; new ids continue after
    them; their text is searchable through the new index at once."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("dlqadmin", "0015_redrive_attempt_lease")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("dlqadmin")
    executor.migrate(before)
    try:
        apps = executor.loader.project_state(before).apps
        Connection, Source = apps.get_model("dlqadmin", "Connection"), apps.get_model("dlqadmin", "Source")
        DeadLetter, Group = apps.get_model("dlqadmin", "DeadLetter"), apps.get_model("dlqadmin", "ErrorGroup")
        conn = Connection.objects.create(name="m16", kind="rabbitmq", url="amqp://127.0.0.1:5672/")
        source = Source.objects.create(connection=conn, name="m16", mode="queue", address="m16.dlq")
        group = Group.objects.create(fingerprint="m16", source=source, error_class="KeyError")
        old = {
            status: DeadLetter.objects.create(
                source=source,
                position=f"p-{status}",
                status=status,
                payload=b'{"order": "%s"}' % status.encode(),
                error_class="KeyError",
                error_message=f"missing {status}",
                error_group=group,
                redrive_count=1 if status == "redriven" else 0,
            )
            for status in ("new", "redriven", "failed")
        }
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    finally:
        MigrationExecutor(connection).migrate(latest)
    from dlqadmin.models import DeadLetter as Letter
    from dlqadmin.models import DeadLetterSearch, SearchBacklog
    from dlqadmin.selectors import DeadLetterFilter
    from dlqadmin.selectors_dashboard import status_counts

    moved = {row.status: row for row in Letter.objects.filter(source_id=source.pk)}
    assert {status: row.pk for status, row in moved.items()} == {s: row.pk for s, row in old.items()}
    assert moved["redriven"].redrive_count == 1 and moved["failed"].error_group_id == group.pk
    assert bytes(moved["new"].payload) == b'{"order": "new"}' and moved["new"].source_key == source.pk
    assert DeadLetterSearch.objects.count() == 3 and not SearchBacklog.objects.exists()
    found = DeadLetterFilter(q="MISSING FAILED").apply(Letter.objects.all())
    assert list(found.values_list("pk", flat=True)) == [old["failed"].pk]
    found = DeadLetterFilter(q='"order": "redriven"').apply(Letter.objects.all())
    assert list(found.values_list("pk", flat=True)) == [old["redriven"].pk]
    counts = {status: n for status, n in status_counts().items() if n}
    assert counts == {"new": 1, "redriven": 1, "failed": 1}
    Letter.objects.filter(pk=old["new"].pk).update(status="resolved")  # triggers on the state table
    assert {status: n for status, n in status_counts().items() if n} == {
        "resolved": 1,
        "redriven": 1,
        "failed": 1,
    }
    newer = Letter.objects.create(source_id=source.pk, position="after")
    assert newer.pk > max(row.pk for row in old.values())


@pytest.mark.django_db(transaction=True)
def test_0020_partitions_the_bodies_in_place_and_moves_the_dedupe_to_the_key_table():
    """Rows from before 0020 keep their ids, bodies, revisions and attempts; their positions are
    found again by the store; new ids continue after them, into partitions made ahead."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("dlqadmin", "0019_connection_schema_registry")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("dlqadmin")
    executor.migrate(before)
    try:
        apps = executor.loader.project_state(before).apps
        Connection, Source = apps.get_model("dlqadmin", "Connection"), apps.get_model("dlqadmin", "Source")
        Body = apps.get_model("dlqadmin", "DeadLetter")
        Job, Attempt = apps.get_model("dlqadmin", "RedriveJob"), apps.get_model("dlqadmin", "RedriveAttempt")
        Revision = apps.get_model("dlqadmin", "DeadLetterRevision")
        conn = Connection.objects.create(name="m20", kind="nats", url="nats://127.0.0.1:4222")
        source = Source.objects.create(connection=conn, name="m20", mode="dlq_stream", address="M20")
        old = [
            Body.objects.create(source=source, source_key=source.pk, position=f"M20:{n}", payload=b"x")
            for n in range(3)
        ]
        Revision.objects.create(dead_letter_id=old[0].pk, payload=b"edited")
        Attempt.objects.create(job=Job.objects.create(status="running"), dead_letter_id=old[1].pk, holds=True)
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    finally:
        MigrationExecutor(connection).migrate(latest)
    from brokers.base import HarvestedMessage, Origin
    from dlqadmin import partition_sql
    from dlqadmin.models import DeadLetter, DeadLetterKey, DeadLetterRevision, RedriveAttempt
    from dlqadmin.models import Source as Sources
    from dlqadmin.services.harvest.store import dead_letters_store

    ids = [row.pk for row in old]
    assert sorted(DeadLetter.objects.filter(source_id=source.pk).values_list("pk", flat=True)) == ids
    assert dict(DeadLetterKey.objects.values_list("dead_letter_id", "position")) == {
        pk: f"M20:{n}" for n, pk in enumerate(ids)
    }
    assert DeadLetterRevision.objects.get().dead_letter.pk == ids[0]  # the foreign keys still hold
    assert RedriveAttempt.objects.get().dead_letter_id == ids[1]
    with connection.cursor() as cursor:
        parts = partition_sql.partitions(cursor)
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = %s", [partition_sql.LETTERS])
        assert cursor.fetchone()[0] == "p"
    assert parts[0].lower is None and parts[0].upper > max(ids) and len(parts) >= 2
    batch = [
        HarvestedMessage(position=f"M20:{n}", payload=b"x", origin=Origin(stream="M20", seq=n))
        for n in range(4)
    ]
    result = dead_letters_store(source=Sources.objects.get(pk=source.pk), batch=batch)
    assert (result.inserted, result.duplicates) == (1, 3)  # the old positions are known
    assert result.inserted_ids[0] > max(ids)
    with pytest.raises(IntegrityError), transaction.atomic():
        DeadLetter.objects.create(source_id=source.pk, position="M20:0")


@pytest.mark.django_db(transaction=True)
def test_0021_counts_each_group_per_status_and_going_back_leaves_writes_working():
    """Rows from before 0021 are counted into the group tally; going back re-creates the old
    functions (a write to the state table after it still works, the tally table gone); coming
    forward again counts those writes too."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("dlqadmin", "0020_deadletter_partitions")]
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("dlqadmin")
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        apps = executor.loader.project_state(before).apps
        Connection, Source = apps.get_model("dlqadmin", "Connection"), apps.get_model("dlqadmin", "Source")
        Group, State = apps.get_model("dlqadmin", "ErrorGroup"), apps.get_model("dlqadmin", "DeadLetterState")
        conn = Connection.objects.create(name="m21", kind="nats", url="nats://127.0.0.1:4222")
        source = Source.objects.create(connection=conn, name="m21", mode="dlq_stream", address="M21")
        one, two = (Group.objects.create(fingerprint=f"m21-{n}", source=source) for n in range(2))
        for status, group, n in [("new", one, 3), ("failed", one, 2), ("resolved", two, 4), ("new", None, 1)]:
            State.objects.bulk_create([State(source=source, status=status, error_group=group)] * n)
        MigrationExecutor(connection).migrate(latest)
        from dlqadmin.models import DeadLetterState, ErrorGroup
        from dlqadmin.selectors_dashboard import group_status_counts

        def counted(pk: int) -> dict:
            return {k: v for k, v in group_status_counts(ErrorGroup.objects.get(pk=pk)).items() if v}

        assert counted(one.pk) == {"new": 3, "failed": 2}
        assert counted(two.pk) == {"resolved": 4}
        MigrationExecutor(connection).migrate(before)  # back: the old functions, no tally table
        State.objects.filter(error_group=two, status="resolved").update(status="archived")
        MigrationExecutor(connection).migrate(latest)
        assert counted(two.pk) == {"archived": 4}
        DeadLetterState.objects.filter(error_group_id=one.pk, status="new").update(error_group_id=two.pk)
        assert (counted(one.pk), counted(two.pk)) == ({"failed": 2}, {"archived": 4, "new": 3})
    finally:
        MigrationExecutor(connection).migrate(latest)
