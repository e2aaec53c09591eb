import os
import uuid

import pytest

AMQP_URL = os.environ.get("AMQP_URL", "amqp://127.0.0.1:5672/")
KAFKA_BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# Folders whose tests carry a marker of their own, so `make test-fast` (-m "not browser and not
# fault") can leave them out; `make test` and CI run everything.
FOLDER_MARKERS = {"browser": "browser", "faults": "fault"}


def pytest_collection_modifyitems(config, items):
    tests_dir = os.path.dirname(__file__)
    for item in items:
        relative = os.path.relpath(str(item.path), tests_dir)
        marker = FOLDER_MARKERS.get(relative.split(os.sep, 1)[0])
        if marker:
            item.add_marker(marker)


def unique(prefix: str) -> str:
    """A resource name no other test (or parallel run) uses."""
    return f"t.{prefix}.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def name():
    return unique


def user_in_role(django_user_model, role: str, username: str | None = None):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(
        username or f"{role}-{uuid.uuid4().hex[:6]}", password="pass-123-word"
    )
    # get_or_create: transactional tests flush the groups the migration created
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def operator(django_user_model):
    return user_in_role(django_user_model, "operator", "operator")


@pytest.fixture
def viewer(django_user_model):
    return user_in_role(django_user_model, "viewer", "viewer")


@pytest.fixture
def admin_user(django_user_model):
    return user_in_role(django_user_model, "admin", "admin-role")


@pytest.fixture(scope="session", autouse=True)
def celery_queue():
    """Tasks enqueued by this run go to a queue of its own (never to another run's worker)."""
    from dlqadmin.celery import app

    queue = unique("celery")
    app.conf.task_default_queue = queue
    yield queue
    try:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
    except Exception:  # noqa: BLE001 - cleanup only
        pass


@pytest.fixture
def harvested():
    """``harvested(n, url=None)`` -> (source, topology): n genuine RabbitMQ dead letters,
    harvested and stored through ``url`` (default: the shared RabbitMQ); the queues are deleted
    afterwards."""
    from dlqadmin.models import Source
    from dlqadmin.services.connections import connection_create
    from dlqadmin.services.harvest.store import source_harvest
    from tests.support import rabbit

    made = []

    def make(count: int, url: str = AMQP_URL):
        top = rabbit.dead_letter(count)
        made.append(top)
        conn = connection_create(
            name=f"rmq-{top.dlq}", kind="rabbitmq", url=url, username="guest", password="guest"
        )
        source = Source.objects.create(connection=conn, name=top.dlq, mode="queue", address=top.dlq)
        assert source_harvest(source=source).inserted == count
        return source, top

    yield make
    for top in made:
        rabbit.delete(top)
