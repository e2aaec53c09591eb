import pytest

from dlqadmin.models import Source
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest import source_harvest
from tests.conftest import AMQP_URL
from tests.support import rabbit


@pytest.fixture
def harvested():
    """``harvested(n)`` -> (source, topology): n genuine RabbitMQ dead letters, harvested and
    stored; the queues are deleted afterwards."""
    made = []

    def make(count: int):
        top = rabbit.dead_letter(count)
        made.append(top)
        conn = connection_create(
            name=f"rmq-{top.dlq}", kind="rabbitmq", url=AMQP_URL, username="guest", password="guest"
        )
        source = Source.objects.create(connection=conn, name=top.dlq, mode="queue", address=top.dlq)
        assert source_harvest(source=source).inserted == count
        return source, top

    yield make
    for top in made:
        rabbit.delete(top)
