"""CLI: redrive by filter or ids (dry run, in-process), export and import round trip."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from dlqadmin.models import AuditEvent, DeadLetter, DeadLetterStatus, RedriveJob, Source
from dlqadmin.services.connections import connection_create
from tests.conftest import AMQP_URL
from tests.support import rabbit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stored():
    top = rabbit.dead_letter(4)
    conn = connection_create(name=top.dlq, kind="rabbitmq", url=AMQP_URL, username="guest", password="guest")
    source = Source.objects.create(connection=conn, name=top.dlq, mode="queue", address=top.dlq)
    yield source, top
    rabbit.delete(top)


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


def test_harvest_command_prints_counts(stored):
    source, _ = stored
    assert f"{source.name}: received 4, stored 4 new, 0 already stored" in run(
        "harvest", "--source", source.name
    )
    assert "received 0, stored 0 new" in run("harvest", "--source", source.name)
    with pytest.raises(CommandError, match="unknown source"):
        run("harvest", "--source", "no-such-source")


def test_harvest_follow_refuses_a_concurrency_below_one():
    with pytest.raises(CommandError, match="--concurrency must be at least 1"):
        run("harvest", "--follow", "--concurrency", "0")


def test_redrive_dry_run_changes_nothing_and_here_redrives(stored):
    source, top = stored
    run("harvest", "--source", source.name)
    out = run("redrive", "--filter", f"source={source.name}&status=new", "--dry-run")
    assert "Plan: 4 selected, 4 to redrive" in out and "Dry run" in out
    assert RedriveJob.objects.count() == 0
    out = run("redrive", "--filter", f"source={source.name}", "--here")
    assert "completed: 4 redriven, 0 failed" in out
    assert len(rabbit.drain(top.work_queue)) == 4


def test_redrive_dry_run_says_where_spring_republished_messages_go_and_here_delivers_them():
    top = rabbit.spring_republished(2)
    try:
        conn = connection_create(
            name=top.dlq, kind="rabbitmq", url=AMQP_URL, username="guest", password="guest"
        )
        source = Source.objects.create(connection=conn, name=top.dlq, mode="queue", address=top.dlq)
        run("harvest", "--source", source.name)
        out = run("redrive", "--filter", f"source={source.name}", "--dry-run")
        assert "Plan: 2 selected, 2 to redrive, 0 parked by the loop guard" in out
        assert "0 need a destination" in out
        route = f"original exchange '{top.exchange}', routing key '{top.routing_key}'"
        assert f"rabbitmq  {source.name} -> {route}  [original exchange + routing key]" in out

        DeadLetter.objects.filter(source=source).update(origin_exchange="", origin_routing_key="")
        out = run("redrive", "--filter", f"source={source.name}", "--dry-run")
        assert "Plan: 2 selected, 0 to redrive" in out and "2 need a destination" in out
        assert "no origin queue, exchange or routing key is recorded" in out
        with pytest.raises(CommandError, match="2 selected message"):
            run("redrive", "--filter", f"source={source.name}")

        destination = json.dumps({"exchange": top.exchange, "routing_key": top.routing_key})
        out = run("redrive", "--filter", f"source={source.name}", "--destination", destination, "--here")
        assert "completed: 2 redriven, 0 failed" in out
        assert len(rabbit.drain(top.work_queue)) == 2
    finally:
        rabbit.delete(top)


def test_redrive_rejects_bad_input_clearly(stored):
    with pytest.raises(CommandError, match="bad --filter: status"):
        run("redrive", "--filter", "status=exploded")
    with pytest.raises(CommandError, match="comma-separated integer ids"):
        run("redrive", "--ids", "1,two")
    with pytest.raises(CommandError, match="nothing matches"):
        run("redrive", "--ids", "999999")


def test_filter_dates_postgresql_cannot_hold_are_command_errors_not_crashes():
    with pytest.raises(
        CommandError, match=r"bad --filter: since: '0001-01-01T00:00:00\+01:00' is out of range"
    ):
        run("redrive", "--filter", "since=0001-01-01T00:00:00%2B01:00", "--dry-run")
    with pytest.raises(CommandError, match="bad --filter: error_group: error_group must be an integer id"):
        run("redrive", "--filter", "error_group=99999999999999999999", "--dry-run")
    with pytest.raises(CommandError, match="comma-separated integer ids"):
        run("redrive", "--ids", "99999999999999999999", "--dry-run")
    # an offset beyond PostgreSQL's +-15:59 and a header value int() refuses still plan
    out = run("redrive", "--filter", "header=x:--1&since=0399-08-15T00:04:02%2B20:51", "--dry-run")
    assert "Plan: 0 selected" in out


def test_export_then_import_is_lossless_and_idempotent(stored, tmp_path):
    source, _ = stored
    run("harvest", "--source", source.name)
    DeadLetter.objects.filter(source=source).update(
        payload=b"\x00\xff binary \x80",
        read_notes=["could not read x-death: 'oops' is not an array of tables"],
    )
    path = tmp_path / "out.jsonl"
    run("export", "--filter", f"source={source.name}", "--output", str(path))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 4
    other = Source.objects.create(
        connection=source.connection, name="restored", mode="queue", address="restored"
    )
    assert "Read 4, stored 4 new, 0 already stored" in run("import", str(path), "--source", "restored")
    assert "Read 4, stored 0 new, 4 already stored" in run("import", str(path), "--source", "restored")
    original = {r.position: r for r in DeadLetter.objects.filter(source=source)}
    for copy in DeadLetter.objects.filter(source=other):
        twin = original[copy.position]
        assert bytes(copy.payload) == bytes(twin.payload) == b"\x00\xff binary \x80"
        assert copy.headers == twin.headers and copy.properties == twin.properties
        assert copy.origin_queue == twin.origin_queue and copy.failed_at == twin.failed_at
        assert (
            copy.read_notes == twin.read_notes == ["could not read x-death: 'oops' is not an array of tables"]
        )
        assert copy.status == DeadLetterStatus.NEW
    assert AuditEvent.objects.filter(action="messages.import", count=4).exists()


def test_import_names_the_bad_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"not": "a record"}\n')
    with pytest.raises(CommandError, match="line 1: not a dlqadmin export record"):
        run("import", str(bad))


def test_import_reads_failure_times_in_utc_and_names_a_line_out_of_range(stored, tmp_path):
    source, _ = stored
    run("harvest", "--source", source.name)
    path = tmp_path / "out.jsonl"
    run("export", "--filter", f"source={source.name}", "--output", str(path))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[0]["failed_at"] = "2026-11-01T22:51:00+20:51"  # fromisoformat reads it; PostgreSQL did not
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    Source.objects.create(connection=source.connection, name="restored", mode="queue", address="restored")
    assert "Read 4, stored 4 new" in run("import", str(path), "--source", "restored")
    first = DeadLetter.objects.get(source__name="restored", position=records[0]["position"])
    assert first.failed_at.isoformat() == "2026-11-01T02:00:00+00:00"
    records[0]["failed_at"] = "0001-01-01T00:00:00+01:00"
    path.write_text(json.dumps(records[0]) + "\n")
    with pytest.raises(
        CommandError, match=r"line 1: not a dlqadmin export record \('0001-01-01T00:00:00\+01:00' is out"
    ):
        run("import", str(path), "--source", "restored")


def test_csv_export_defuses_formulas(stored, tmp_path):
    source, _ = stored
    run("harvest", "--source", source.name)
    DeadLetter.objects.filter(source=source).update(error_message='=HYPERLINK("http://evil")')
    path = tmp_path / "out.csv"
    run("export", "--format", "csv", "--output", str(path))
    assert "'=HYPERLINK" in path.read_text()
