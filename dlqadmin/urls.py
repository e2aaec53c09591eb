from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .views import health

urlpatterns = [
    path("", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(template_name="admin/login.html"), name="login"),
    path("healthz", health.healthz, name="dlq-healthz"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="dlq-api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="dlq-api-schema"), name="dlq-api-docs"),
]
