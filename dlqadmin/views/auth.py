"""Sign-in and sign-out (Django auth with the dashboard's own templates)."""

from django.contrib.auth import views as auth_views

login = auth_views.LoginView.as_view(template_name="dlqadmin/login.html", redirect_authenticated_user=True)
logout = auth_views.LogoutView.as_view()
