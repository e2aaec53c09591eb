"""Websocket consumers: relay live events to signed-in browsers. They never call brokers."""

from __future__ import annotations

import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from dlqadmin import permissions, selectors

#: how long a consumer trusts its answer to "may this user see source N?" (access rules change rarely)
VISIBILITY_TTL_SECONDS = 30.0


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/live/`` for job progress and new-failure counts; ``/ws/jobs/<id>/`` for one job.

    New-failure counts and job progress are relayed only for sources and jobs the signed-in user
    may see (per-source restriction), so a restricted user cannot learn that another team's
    source is failing or follow its redrives."""

    groups_for_path = ("jobs", "dead-letters")

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.user = user
        self.sees_all = await database_sync_to_async(permissions.can)(user, permissions.MANAGE_CONNECTIONS)
        self.visible: dict[tuple[str, int], tuple[bool, float]] = {}
        job_id = self.scope["url_route"]["kwargs"].get("job_id")
        if job_id and not await self._visible("job", job_id):
            await self.close(code=4404)
            return
        self.subscribed = [f"job-{job_id}"] if job_id else list(self.groups_for_path)
        for group in self.subscribed:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        for group in getattr(self, "subscribed", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def job_progress(self, event):
        if await self._visible("job", event["job"]["id"]):
            await self.send_json({"type": "job.progress", "job": event["job"]})

    async def dead_letters_new(self, event):
        if await self._visible("source", event["source"]):
            await self.send_json(
                {"type": "dead_letters.new", "source": event["source"], "count": event["count"]}
            )

    async def _visible(self, what: str, pk: int) -> bool:
        if self.sees_all:
            return True
        now = time.monotonic()
        cached = self.visible.get((what, pk))
        if cached is None or cached[1] < now:
            allowed = await database_sync_to_async(_may_see[what])(self.user, pk)
            cached = self.visible[(what, pk)] = (allowed, now + VISIBILITY_TTL_SECONDS)
        return cached[0]


_may_see = {
    "source": selectors.source_visible,
    "job": lambda user, pk: selectors.redrive_jobs_for(user).filter(pk=pk).exists(),
}
