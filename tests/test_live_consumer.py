"""The websocket consumer relays live events only to users allowed to see them."""

from __future__ import annotations

import asyncio
import copy

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings

from dlqadmin import live
from dlqadmin.consumers import LiveConsumer
from dlqadmin.services.connections import connection_create
from dlqadmin.services.harvest.store import dead_letters_store
from dlqadmin.services.redrive.jobs import redrive_job_create
from tests.conftest import unique, user_in_role
from tests.support.access_world import message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def private_layer():
    """A channel-layer prefix of this test's own: other runs' live events never reach it."""
    from django.test import override_settings

    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    if "CONFIG" in layers["default"]:
        layers["default"]["CONFIG"]["prefix"] = unique("live").replace(".", "-")
    with override_settings(CHANNEL_LAYERS=layers):
        yield


@pytest.fixture
def sources(django_user_model):
    conn = connection_create(name=unique("rmq"), kind="rabbitmq", url="amqp://127.0.0.1:5672/")
    open_source = conn.sources.create(name=unique("open"), mode="queue", address=unique("q"))
    private = conn.sources.create(name=unique("private"), mode="queue", address=unique("q"))
    owner = user_in_role(django_user_model, "operator")
    private.allowed_users.add(owner)
    return open_source, private, owner


async def _received(user, events, jobs=()) -> list[dict]:
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"kwargs": {}}
    connected, _ = await communicator.connect()
    assert connected
    try:
        for source_id, count in events:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda s=source_id, c=count: live.dead_letters_arrived(source_id=s, count=c)
            )
        for job in jobs:
            await asyncio.get_running_loop().run_in_executor(None, live.job_progress, job)
        got = []
        while not await communicator.receive_nothing(timeout=1):
            got.append(await communicator.receive_json_from())
        return got
    finally:
        await communicator.disconnect()


def test_new_failure_counts_reach_only_users_who_may_see_the_source(
    private_layer, sources, django_user_model
):
    open_source, private, owner = sources
    outsider = user_in_role(django_user_model, "operator")
    admin = user_in_role(django_user_model, "admin")
    events = [(private.pk, 3), (open_source.pk, 2)]

    seen_by_outsider = async_to_sync(_received)(outsider, events)
    assert seen_by_outsider == [{"type": "dead_letters.new", "source": open_source.pk, "count": 2}]

    for user in (owner, admin):
        got = async_to_sync(_received)(user, events)
        assert sorted((e["source"], e["count"]) for e in got) == sorted(events)


def test_anonymous_sockets_are_refused(private_layer):
    from django.contrib.auth.models import AnonymousUser

    async def connect():
        communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
        communicator.scope["user"] = AnonymousUser()
        communicator.scope["url_route"] = {"kwargs": {}}
        connected, code = await communicator.connect()
        return connected, code

    assert async_to_sync(connect)() == (False, 4401)


def _stored(source) -> int:
    item = message(payload=b"{}", headers={}, error="boom", error_class="E")
    return dead_letters_store(source=source, batch=[item]).inserted_ids[0]


def test_job_progress_reaches_only_users_who_may_see_the_job(private_layer, sources, django_user_model):
    open_source, private, owner = sources
    outsider = user_in_role(django_user_model, "operator")
    open_job = redrive_job_create(actor=None, ids=[_stored(open_source)])
    private_job = redrive_job_create(actor=None, ids=[_stored(private)])

    got = async_to_sync(_received)(outsider, [], jobs=[private_job, open_job])
    assert [e["job"]["id"] for e in got] == [open_job.pk]
    got = async_to_sync(_received)(owner, [], jobs=[private_job, open_job])
    assert sorted(e["job"]["id"] for e in got) == sorted([open_job.pk, private_job.pk])

    async def follow(user, job_id):
        communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), f"/ws/jobs/{job_id}/")
        communicator.scope["user"] = user
        communicator.scope["url_route"] = {"kwargs": {"job_id": job_id}}
        connected, code = await communicator.connect()
        if connected:
            await communicator.disconnect()
        return connected, code

    assert async_to_sync(follow)(outsider, private_job.pk) == (False, 4404)
    assert async_to_sync(follow)(owner, private_job.pk)[0] is True
