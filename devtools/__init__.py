"""Development tooling shared by the test suite (``tests/``), the benchmarks (``bench/``) and
``make demo`` (``scripts/demo.py``).

Nothing in the application (``dlqadmin/``, ``brokers/``) imports this package, and importing it
has no side effects: no Django setup, no settings read, no processes started.
"""
