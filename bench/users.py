"""The signed-in operator the latency and visibility requests run as (the in-process test
client: server time only, no network, no browser rendering)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import NoReverseMatch, reverse


def signed_in_client(role: str = "operator") -> Client:
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=f"bench-{role}")
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    client = Client()
    client.force_login(user)
    return client


def url(name: str, *args) -> str | None:
    """The path of URL ``name`` (None when the URL conf does not have it, e.g. not built yet)."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None
