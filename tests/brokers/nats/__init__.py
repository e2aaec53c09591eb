"""The NATS adapter against real servers: the shared system server at NATS_URL (2.9.10 here)
and a private nats-server 2.15.x (``tests/brokers/nats_server.py``) for term reasons and payloads
above 1 MiB.

Every test creates uniquely named streams and deletes them afterwards.
"""
