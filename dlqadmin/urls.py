from django.contrib import admin
from django.urls import include, path

from dlqadmin.views import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("dlqadmin.api.urls")),
    path("healthz", health.healthz, name="dlq-healthz"),
    path("readyz", health.readyz, name="dlq-readyz"),
    path("metrics", health.metrics, name="dlq-metrics"),
    path("", include("dlqadmin.views.urls")),
]
