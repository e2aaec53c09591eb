"""/api/v1/: the REST API (resources below), its OpenAPI schema and Swagger UI."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import IsAuthenticated
from rest_framework.routers import SimpleRouter

from dlqadmin.api import views
from dlqadmin.api.authentication import AUTHENTICATION_CLASSES
from dlqadmin.api.views.base import api_not_found

router = SimpleRouter()
router.register("connections", views.ConnectionViewSet, basename="dlq-api-connection")
router.register("sources", views.SourceViewSet, basename="dlq-api-source")
router.register("messages", views.MessageViewSet, basename="dlq-api-message")
router.register("redrives", views.RedriveViewSet, basename="dlq-api-redrive")
router.register("error-groups", views.ErrorGroupViewSet, basename="dlq-api-error-group")
router.register("audit-events", views.AuditEventViewSet, basename="dlq-api-audit-event")
router.register("tokens", views.TokenViewSet, basename="dlq-api-token")
router.register("alert-rules", views.AlertRuleViewSet, basename="dlq-api-alert-rule")
router.register("alert-deliveries", views.AlertDeliveryViewSet, basename="dlq-api-alert-delivery")
router.register("masking-rules", views.MaskingRuleViewSet, basename="dlq-api-masking-rule")
router.register("schemas", views.StoredSchemaViewSet, basename="dlq-api-schema-store")

_docs_access = {"authentication_classes": AUTHENTICATION_CLASSES, "permission_classes": [IsAuthenticated]}

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(**_docs_access), name="dlq-api-schema"),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="dlq-api-schema", **_docs_access),
        name="dlq-api-docs",
    ),
    *router.urls,
    re_path(r"^.*$", api_not_found, name="dlq-api-not-found"),
]
