"""PostgreSQL unreachable while the harvester drains a RabbitMQ DLQ: nothing is acked unstored.

The harvester process reaches the database only through a TCP proxy; the test cuts the proxy
(listener closed, open connections dropped) in the middle of the harvest. Every message that
was not committed must still be on the broker, and once the database is reachable again
everything ends up stored exactly once.
"""

from __future__ import annotations

import pytest
from django.db import connection

from dlqadmin.models import Source
from dlqadmin.services.connections import connection_create
from tests.conftest import AMQP_URL, unique
from tests.faults.helpers import distinct_positions, queue_state, stored
from tests.support import rabbit
from tests.support.processes import database_url, wait_until
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

COUNT = 2000
BATCH = 25


@pytest.fixture
def db_proxy():
    db = connection.settings_dict
    proxy = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)).start()
    yield proxy
    proxy.close()


def test_postgres_cut_mid_harvest_acks_nothing_unstored(harvesters, db_proxy):
    top = rabbit.dead_letter(COUNT)
    try:
        conn = connection_create(
            name=unique("rmq-pg"), kind="rabbitmq", url=AMQP_URL, username="guest", password="guest"
        )
        source = Source.objects.create(
            connection=conn, name=top.dlq, mode="queue", address=top.dlq, options={"batch_size": BATCH}
        )
        through_proxy = database_url(port=db_proxy.port)
        proc = harvesters(source, db_url=through_proxy)
        assert wait_until(lambda: stored(source) >= 300, 60), proc.log()[-3000:]
        db_proxy.cut()
        at_cut = stored(source)
        assert at_cut < COUNT, "the harvest was over before the database went away; the test proves nothing"

        # The harvester cannot commit now: it must ride the outage out (no exit, no ack), and the
        # broker must hold everything not stored.
        assert not wait_until(lambda: not proc.alive(), 5, 0.1), "the harvester exited on a database outage"
        in_db = stored(source)
        assert in_db <= at_cut + BATCH  # only a commit racing the cut may still have landed

        def requeued():
            ready, consumers = queue_state(AMQP_URL, top.dlq)
            return consumers == 0 and ready >= COUNT - in_db

        assert wait_until(requeued, 10)
        ready, consumers = queue_state(AMQP_URL, top.dlq)
        # Nothing acked without being stored: every message not in the database is back on the
        # broker, plus at most the one batch committed whose ack never happened.
        assert consumers == 0
        assert COUNT - in_db <= ready <= COUNT - in_db + BATCH, (in_db, ready)

        db_proxy.restore()  # the same harvester process recovers by itself
        assert wait_until(lambda: stored(source) >= COUNT, 90), (stored(source), proc.log()[-3000:])
        assert proc.stop() == 0
        assert stored(source) == distinct_positions(source) == COUNT
        assert queue_state(AMQP_URL, top.dlq) == (0, 0)
    finally:
        rabbit.delete(top)
