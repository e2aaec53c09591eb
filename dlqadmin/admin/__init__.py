"""Django admin: every model, with list columns, filters, search and read-only payloads.

It follows the same rules as the dashboard and the API: writes go through the services (which
check roles and audit), users see only the sources they may see, and payloads, headers and error
text are masked for masked users. Broker credentials are write-only. Dead letters, redrive jobs
and audit events are read-only (they are evidence).
"""

from django.contrib import admin

from . import brokers, dead_letters, operations, schemas  # noqa: F401 - registers the ModelAdmins

admin.site.site_header = "dlqadmin"
admin.site.site_title = "dlqadmin"
admin.site.index_title = "Dead letters across RabbitMQ, Kafka and NATS"
