"""NATS JetStream adapter (nats-py). The registry loads ``brokers.nats.NatsAdapter``.

This package shares its name with the client library: every module here uses absolute
``import nats`` (never relative), which resolves to nats-py because ``brokers/`` itself is not
on ``sys.path``. Layout:

``adapter.py``     the ``NatsAdapter`` class and its per-mode capabilities
``harvest.py``     advisory / dlq_stream / subject harvesting (positions, ack semantics)
``redrive.py``     publishing with PubAck, header rules
``admin.py``       capture stream (prepare), durable consumers, backlog
``discovery.py``   every stream: captured ones, DLQ-named ones, work streams and their max_deliver
``connection.py``  connecting, error translation, raw JetStream wire calls
``wire.py``        header blocks, status lines, timestamps (pure functions)
"""

from __future__ import annotations

from .adapter import NatsAdapter

__all__ = ["NatsAdapter"]
