"""Roles exist after migrating and grant exactly their actions."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied

from dlqadmin import permissions as perms

pytestmark = pytest.mark.django_db


@pytest.fixture
def user_with(django_user_model):
    def make(*roles):
        user = django_user_model.objects.create_user(f"u-{'-'.join(roles) or 'none'}", password="x-pass-123")
        user.groups.set(Group.objects.filter(name__in=roles))
        return user

    return make


def test_the_migration_creates_the_three_roles():
    assert set(Group.objects.values_list("name", flat=True)) >= {"viewer", "operator", "admin"}
    assert Group.objects.get(name="admin").permissions.filter(codename="change_connection").exists()
    assert not Group.objects.get(name="viewer").permissions.filter(codename="change_connection").exists()


@pytest.mark.parametrize(
    ("roles", "action", "allowed"),
    [
        ((), perms.VIEW, False),
        (("viewer",), perms.VIEW, True),
        (("viewer",), perms.VIEW_UNMASKED, False),
        (("viewer",), perms.REDRIVE, False),
        (("operator",), perms.REDRIVE, True),
        (("operator",), perms.EDIT, True),
        (("operator",), perms.MANAGE_CONNECTIONS, False),
        (("admin",), perms.MANAGE_CONNECTIONS, True),
        (("admin",), perms.MANAGE_TOKENS, True),
        (("viewer", "operator"), perms.DISCARD, True),
    ],
)
def test_each_role_may_do_exactly_its_actions(user_with, roles, action, allowed):
    user = user_with(*roles)
    assert perms.can(user, action) is allowed
    if not allowed:
        with pytest.raises(PermissionDenied):
            perms.require(user, action)


def test_a_superuser_may_do_everything(django_user_model):
    root = django_user_model.objects.create_superuser("root", "r@example.com", "root-pass-123")
    assert all(perms.can(root, a) for a in (perms.REDRIVE, perms.MANAGE_CONNECTIONS, perms.MANAGE_TOKENS))


def test_an_inactive_user_may_do_nothing(user_with):
    user = user_with("admin")
    user.is_active = False
    assert not perms.can(user, perms.VIEW)
