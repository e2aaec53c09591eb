"""The real ASGI application (HTTP + websockets) plus static files, for browser tests only.

Production serves /static/ with WhiteNoise from STATIC_ROOT after `collectstatic`; the test run
has no collected files, so the test server wraps the application in Django's static-files handler."""

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from dlqadmin.asgi import application as dashboard

application = ASGIStaticFilesHandler(dashboard)
