"""Websocket routes (Channels consumers live in consumers.py)."""

from django.urls import path

from dlqadmin.consumers import LiveConsumer

websocket_urlpatterns = [
    path("ws/live/", LiveConsumer.as_asgi()),
    path("ws/jobs/<int:job_id>/", LiveConsumer.as_asgi()),
]
