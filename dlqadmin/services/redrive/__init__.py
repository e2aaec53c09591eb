"""Redrive: send chosen dead letters back to their broker, as a job the operator can pause,
resume and cancel, with exact counters. No re-exports: import the module that holds the name.

Life of a job, module by module:

``options``      what a redrive may be asked for (velocity, batch size, destination and header
                 policy keys, how many ids): the bounds every surface checks.
``destination``  where each message goes (origin, original route, override, or it needs a
                 destination), decided in SQL for a whole selection.
``jobs``         plan (``redrive_plan``: the counts the operator confirms), create
                 (``redrive_job_create``), pause / resume / cancel.
``claim``        the job's messages become QUEUED with one RedriveAttempt each; a filter job is
                 claimed in part by the request, the rest by the worker ahead of sending.
``lease``        who owns what: a message belongs to one active job, an attempt in flight to one
                 chunk claim (fencing token + lease, renewed while the owner waits).
``send``         one chunk: claim it, build its messages, publish them on the broker loop, record
                 the confirmed outcomes (under the chunk's token only).
``pipeline``     one processing call as overlapping chunks: publish *k* while *k-1* is recorded
                 and *k+1* claimed.
``worker``       what the Celery task runs (``redrive_job_process``, ``redrive_job_step``), job
                 finish, the watchdog that re-enqueues jobs whose worker died.

Logger names predate this package and are kept: ``dlqadmin.services.redrive`` (jobs),
``dlqadmin.services.redrive_claim`` (claim), ``dlqadmin.services.redrive_worker`` (worker, send,
pipeline, lease).
"""
