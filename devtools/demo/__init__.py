"""``make demo`` (``scripts/demo.py``, which documents what it does and its environment):

``config``      the environment, generated secrets, and the environment every child gets
``supervisor``  child processes in their own process groups, logs, readiness, orderly stop
``probes``      is a port free, does a TCP / Redis / NATS / HTTP server answer
``stats``       the status line, read from the demo database
``console``     what the user reads: status lines and errors to fix
``paths``       the project, the interpreter, the embedded brokers' binaries
``main``        the demo itself: start everything in order, report, run until Ctrl-C
"""
