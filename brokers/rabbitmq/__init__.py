"""RabbitMQ (AMQP 0-9-1) adapter: dead-letter queues harvested with manual acks, redriven with
publisher confirms.

- :mod:`.adapter`     the :class:`RabbitMQAdapter` contract implementation
- :mod:`.harvest`     consumer drain / requeueing basic.get pass, acks after the sink
- :mod:`.redrive`     targets, exchange checks, pipelined confirmed publishes
- :mod:`.messages`    AMQP message <-> dataclasses (properties, x-death, position, redrive headers)
- :mod:`.management`  discovery through the management HTTP API
- :mod:`.connection`  URL/credentials, TLS, client errors -> BrokerError
"""

from .adapter import RabbitMQAdapter
from .messages import RawLongStr, wire_value

__all__ = ["RabbitMQAdapter", "RawLongStr", "wire_value"]
