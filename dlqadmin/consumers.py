"""Websocket consumers: relay live events to signed-in browsers. They never call brokers."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/live/`` for job progress and new-failure counts; ``/ws/jobs/<id>/`` for one job."""

    groups_for_path = ("jobs", "dead-letters")

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        job_id = self.scope["url_route"]["kwargs"].get("job_id")
        self.subscribed = [f"job-{job_id}"] if job_id else list(self.groups_for_path)
        for group in self.subscribed:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        for group in getattr(self, "subscribed", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def job_progress(self, event):
        await self.send_json({"type": "job.progress", "job": event["job"]})

    async def dead_letters_new(self, event):
        await self.send_json({"type": "dead_letters.new", "source": event["source"], "count": event["count"]})
