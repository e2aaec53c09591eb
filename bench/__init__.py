"""``make bench``: dlqadmin's harvest, redrive and dashboard speed against the raw client ceiling.

Run with ``python -m bench`` (environment: see :mod:`bench.config`). One module per measurement:

* :mod:`bench.throughput`  raw drain / publish per broker vs dlqadmin harvest / redrive (1-3)
* :mod:`bench.ceiling`     what PostgreSQL alone absorbs: COPY and status updates (with 1-3)
* :mod:`bench.peer`        the pipeline a team would write by hand, per broker (with 1-3)
* :mod:`bench.latency`     dashboard and API server time over a large dead-letter table (4)
* :mod:`bench.memory`      peak RSS of the Celery worker during a large redrive (5)
* :mod:`bench.visibility`  dead-lettered on the broker -> visible, then searchable, through the API (6)
* :mod:`bench.scale`       two workers on one job at a velocity, fairness, redrive per core (7)

Everything runs against a database of its own (created, migrated and dropped by the run) and
uniquely named broker resources (deleted at the end). Results are ratios measured side by side
in the same run, printed as a table and written to ``docs/benchmarks.md`` (``BENCH_OUTPUT``).
"""
