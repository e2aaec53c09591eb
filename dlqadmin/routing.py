"""Websocket routes (Channels consumers live in consumers.py)."""

websocket_urlpatterns: list = []
