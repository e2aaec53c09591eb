"""Harvest: read dead letters from a source's broker and store them in PostgreSQL, where they
are grouped and can be redriven. No re-exports: import the module that holds the name.

Life of a harvested batch, module by module:

``prepare``   set the broker up so a source's failures are captured at all (``source_prepare``,
              run after a source or connection is saved; ``harvest_preparing`` when the harvest
              finds the capture missing), the outcome recorded on the source.
``store``     one harvest pass for one source (``source_harvest``: CLI, "harvest now", the
              follower) and the sink the adapters call with each batch (``dead_letters_store``):
              the batch is committed, idempotently by (source, position), before the adapter acks
              anything on the broker; failures are recorded on the source.
``boundary``  the last line before PostgreSQL: a message fitted to the ``dead_letter`` columns,
              and the minimal row stored when the database still refuses one.
``follow``    the long-running harvester (``manage.py harvest --follow``): every enabled source in
              bounded passes, one adapter per connection, backoff per source and per broker.

Logger names predate this package and are kept: ``dlqadmin.services.harvest`` (store),
``dlqadmin.services.harvester`` (follow), ``dlqadmin.services.source_prepare`` (prepare).
"""
