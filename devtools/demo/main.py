"""The demo itself: check ports, start the embedded PostgreSQL, migrate, start the embedded
brokers, seed, start the web server, Celery, the harvester and the traffic generator, report,
and run until Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import time
from urllib.parse import urlsplit

from devtools.demo import postgres
from devtools.demo.config import Config, child_env, database_label, load_secrets
from devtools.demo.console import DemoError, indent, more, say, status
from devtools.demo.paths import PY, manage, nats_binary, shown, tansu_binary
from devtools.demo.probes import http_status, nats_answers, port_free, redis_answers, tcp_answers
from devtools.demo.stats import Stats
from devtools.demo.supervisor import Supervisor


def start_postgres(embedded: postgres.Embedded, sup: Supervisor) -> None:
    """initdb on the first start, then the server as a child, then the demo's database."""
    run_as = postgres.server_user()
    initdb, searchable = postgres.prepare(embedded.pgdata, run_as)
    if searchable:
        more(f"(search bit o+x added to {', '.join(map(str, searchable))}: the server runs as nobody)")
    if initdb:
        pwfile = postgres.password_file(embedded.pgdata, embedded.password, run_as)
        try:
            initdb_bin = str(postgres.bin_dir() / "initdb")
            sup.run("initdb", [initdb_bin, *initdb, f"--pwfile={pwfile}"], timeout=120, run_as=run_as)
        finally:
            pwfile.unlink(missing_ok=True)
    sup.start("postgres", postgres.server_args(embedded), run_as=run_as, stop_signal=signal.SIGINT)
    sup.wait_for("embedded PostgreSQL", lambda: postgres.probe(embedded), 60)
    postgres.ensure_database(embedded)
    status("ok", "PostgreSQL", embedded.label + (" (new cluster)" if initdb else ""))


def run_demo(config: Config, sup: Supervisor) -> None:
    url = f"http://127.0.0.1:{config.port}/"
    keys = load_secrets(config.state / "secrets.env")
    embedded = None
    if not config.database_url:
        embedded = postgres.Embedded(config.state / "pgdata", config.pg_port, keys["DEMO_DB_PASSWORD"])
    for port, what, var in (
        (config.port, "web server", "DEMO_PORT"),
        (config.nats_port, "embedded NATS", "DEMO_NATS_PORT"),
        (config.kafka_port, "embedded Kafka (tansu)", "DEMO_KAFKA_PORT"),
        *([(config.pg_port, "embedded PostgreSQL", "DEMO_PG_PORT")] if embedded else []),
    ):
        if not port_free(port):
            raise DemoError(
                f"port {port} for the {what} is already in use. Is another `make demo` still running? "
                f"Stop it, or choose another port with {var}=..."
            )
    redis_url = "" if config.redis_url.lower() in ("", "off", "none") else config.redis_url
    if redis_url and not redis_answers(redis_url):
        redis_url = ""
    database_url = embedded.url if embedded else config.database_url
    sup.env = child_env(config, keys, redis_url, database_url)
    stats = Stats(sup.env)

    say(f"dlqadmin demo: state in {shown(config.state)}, one log per process in {shown(sup.logs)}/")
    if embedded:
        start_postgres(embedded, sup)
    sup.run("migrate", manage("migrate", "--noinput"))
    where = "embedded PostgreSQL" if embedded else f"{database_label(database_url)} (DATABASE_URL)"
    status("ok", "database", f"{where} (migrated)")
    password = {"DEMO_PASSWORD": keys["DEMO_PASSWORD"]}  # only this step needs it
    sup.run("create_demo_user", manage("create_demo_user", "--username", "demo"), extra_env=password)
    status(
        "ok",
        "demo operator",
        f"demo / {keys['DEMO_PASSWORD']} (kept in {shown(config.state / 'secrets.env')})",
    )

    nats_store = config.state / "nats"
    nats_store.mkdir(parents=True, exist_ok=True)
    sup.start(
        "nats",
        [str(nats_binary()), "-a", "127.0.0.1", "-p", str(config.nats_port), "-js", "-sd", str(nats_store)],
    )
    sup.wait_for("embedded NATS", lambda: nats_answers(config.nats_port), 20)
    nats_url = f"nats://127.0.0.1:{config.nats_port}"
    status("ok", "NATS", f"embedded nats-server on {nats_url[7:]} (JetStream store {shown(nats_store)})")

    # tansu keeps topics in memory, so every start is a new, empty cluster: a fresh cluster id
    # keeps its offsets from colliding with dead letters stored by earlier demo runs.
    cluster_id = f"dlqadmin-demo-{int(time.time())}"
    listener = f"tcp://127.0.0.1:{config.kafka_port}"
    sup.start(
        "kafka",
        [tansu_binary(), "broker", "--cluster-id", cluster_id, "--listener-url", listener,
         "--advertised-listener-url", listener],
    )  # fmt: skip
    sup.wait_for("embedded Kafka (tansu)", lambda: tcp_answers("127.0.0.1", config.kafka_port), 30)
    kafka = f"127.0.0.1:{config.kafka_port}"
    status("ok", "Kafka", f"embedded tansu on {kafka} (in memory: empty at every start)")

    seed = manage("seed_demo", "--prefix", config.prefix)
    sup.run("seed_embedded", [*seed, "--kafka-bootstrap", kafka, "--nats-url", nats_url], timeout=120)

    rabbitmq_url = "" if config.rabbitmq_url.lower() in ("", "off", "none") else config.rabbitmq_url
    rabbit = urlsplit(rabbitmq_url) if rabbitmq_url else None
    where = f"{rabbit.hostname}:{rabbit.port or 5672}" if rabbit else ""
    if rabbit is None:
        status("--", "RabbitMQ", "skipped (DEMO_RABBITMQ_URL=off)")
    elif not tcp_answers(rabbit.hostname or "127.0.0.1", rabbit.port or 5672):
        status("--", "RabbitMQ", f"NOT reachable on {where}: the demo runs without it.")
        more("Start one (e.g. `rabbitmq-server -detached`) and run `make demo` again to include it.")
        rabbitmq_url = ""
    else:
        try:
            sup.run("seed_rabbitmq", [*seed, "--rabbitmq-url", rabbitmq_url], timeout=60)
            status("ok", "RabbitMQ", f"{where} (the RabbitMQ already running on this machine)")
        except DemoError as exc:
            status("--", "RabbitMQ", f"{where} answers but cannot be used, so the demo runs without it:")
            say(indent(str(exc)))
            rabbitmq_url = ""

    if redis_url:
        status("ok", "Redis", f"{redis_url} (Celery broker and channel layer)")
    else:
        status("--", "Redis", f"none: Celery uses files in {shown(config.state / 'celery')} instead")

    sources = "orders-dlq, " if rabbitmq_url else ""
    status("ok", "seeded", f"sources {sources}payments-dlt, connect-dlq, shipments-advisories")

    sup.start(
        "web", [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(config.port), "dlqadmin.asgi:application"]
    )
    celery = [PY, "-m", "celery", "-A", "dlqadmin"]
    sup.start(
        "celery-worker",
        [*celery, "worker", "--loglevel", "INFO", "--pool", "threads", "--concurrency", "4",
         "--hostname", f"demo-{os.getpid()}@%h"],
    )  # fmt: skip
    sup.start(
        "celery-beat",
        [*celery, "beat", "--loglevel", "INFO", "--schedule", str(config.state / "celerybeat-schedule")],
    )
    sup.start("harvester", manage("harvest", "--follow"))
    traffic = [PY, "-m", "brokers.simulate", "--prefix", config.prefix, "--rate", str(config.rate)]
    traffic += ["--kafka-bootstrap", kafka, "--nats-url", nats_url]
    if rabbitmq_url:
        traffic += ["--rabbitmq-url", rabbitmq_url]
    sup.start("traffic", traffic)
    sup.wait_for("the web server", lambda: http_status(f"{url}healthz") == 200, 60)
    status("ok", "running", "web (daphne), celery-worker, celery-beat, harvester (harvest --follow),")
    more(f"traffic (python -m brokers.simulate: about {config.rate:g} dead letters/s per broker)")
    say()
    say(f"  Open {url} and log in as demo / {keys['DEMO_PASSWORD']}")
    say("  Messages: every harvested dead letter. Error groups: the same failure, counted once.")
    say(f"  Connections: the brokers and their sources. Django admin: {url}admin/")
    say(f"  Logs: {shown(sup.logs)}/<process>.log    Ctrl-C stops everything.")
    say()

    next_status = time.monotonic() + 10
    while True:
        sup.check()
        if time.monotonic() >= next_status:
            say(f"{time.strftime('%H:%M:%S')}  {stats.line()}")
            next_status = time.monotonic() + 30
        time.sleep(0.5)


def main() -> int:
    config = Config.from_env()
    logs = config.state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sup = Supervisor(env={}, logs=logs)

    def on_signal(signum, frame):
        if sup.stopping:  # a second Ctrl-C: do not wait for graceful shutdowns
            for child in sup.children:
                child.signal_group(signal.SIGKILL)
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        run_demo(config, sup)
    except KeyboardInterrupt:
        pass
    except DemoError as exc:
        say(f"\ndemo: {exc}")
        code = 1
    finally:
        sup.stop()
    if sup.started:
        say(f"Demo stopped. To start afresh next time: rm -rf {shown(config.state)}")
    return code
