"""Dashboard URLs (included at "/"). Names are prefixed ``dlq-``; ``login``/``logout`` are Django's."""

from django.urls import path

from . import audit, auth, connections, groups, message, messages, overview, redrive, schemas

urlpatterns = [
    path("login/", auth.login, name="login"),
    path("logout/", auth.logout, name="logout"),
    path("", overview.overview, name="dlq-overview"),
    path("messages/", messages.messages_list, name="dlq-messages"),
    path("messages/count/", messages.messages_count, name="dlq-messages-count"),
    path("messages/bulk/", messages.messages_bulk, name="dlq-messages-bulk"),
    path("messages/export/", messages.messages_export, name="dlq-messages-export"),
    path("messages/<int:pk>/", message.message_detail, name="dlq-message"),
    path("messages/<int:pk>/payload/", message.message_payload, name="dlq-message-payload"),
    path("messages/<int:pk>/edit/", message.message_edit, name="dlq-message-edit"),
    path("groups/", groups.group_list, name="dlq-groups"),
    path("groups/<int:pk>/", groups.group_detail, name="dlq-group"),
    path("groups/<int:pk>/status/", groups.group_status, name="dlq-group-status"),
    path("redrive/", redrive.redrive, name="dlq-redrive"),
    path("jobs/", redrive.job_list, name="dlq-jobs"),
    path("jobs/<int:pk>/", redrive.job_detail, name="dlq-job"),
    path("jobs/<int:pk>/progress/", redrive.job_progress, name="dlq-job-progress"),
    path("jobs/<int:pk>/<str:action>/", redrive.job_control, name="dlq-job-control"),
    path("connections/", connections.connection_list, name="dlq-connections"),
    path("connections/add/", connections.connection_edit, name="dlq-connection-add"),
    path("connections/<int:pk>/edit/", connections.connection_edit, name="dlq-connection-edit"),
    path("connections/<int:pk>/test/", connections.connection_test, name="dlq-connection-test"),
    path(
        "connections/<int:pk>/discover/", connections.connection_discover_view, name="dlq-connection-discover"
    ),
    path("connections/<int:pk>/sources/add/", connections.source_add, name="dlq-source-add"),
    path("sources/<int:pk>/edit/", connections.source_edit, name="dlq-source-edit"),
    path("sources/<int:pk>/harvest/", connections.source_harvest_now, name="dlq-source-harvest"),
    path("audit/", audit.audit_list, name="dlq-audit"),
    path("schemas/", schemas.schema_list, name="dlq-schemas"),
    path("schemas/<int:pk>/delete/", schemas.schema_delete, name="dlq-schema-delete"),
]
