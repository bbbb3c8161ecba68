"""Every admin page asks for its model's permission: a staff user without permissions gets 403 on every URL
of every registered model (custom pages included, such as the presence list), and the view permission
alone opens the list and the object pages, never a form that changes anything."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.contrib.auth.models import Group, Permission
from django.db.models import Model
from django.test import Client
from django.urls import URLPattern, reverse
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from core.admin_readonly import ReadOnlyAdminMixin
from messaging.services import edit_message, send_message, set_reaction
from presence.models import PresenceConnection
from rooms.services import accept_invite, ban_member, block_user, create_invite, create_room, join_room

pytestmark = pytest.mark.django_db

OBJECT_ARGUMENTS = ("object_id", "id")


@pytest.fixture
def one_of_each() -> None:
    """At least one row of every registered model, made the way the application makes them."""
    owner = User.objects.create_user(username="owner", password="pw-Secret-123")
    room = create_room(owner=owner, title="watched", max_personnel=5)  # room, membership, ENTER, outbox event
    member = User.objects.create_user(username="member", password="pw-Secret-123")
    join_room(room_id=room.pk, user=member)
    said = send_message(room_id=room.pk, sender=owner, client_id="c1", body="hello @member").message
    edit_message(room_id=room.pk, message_id=said["id"], actor=owner, body="hello again @member")  # MessageEdit
    set_reaction(room_id=room.pk, message_id=said["id"], actor=member, emoji="👍", on=True)  # Reaction
    guest = User.objects.create_user(username="guest", password="pw-Secret-123")
    accept_invite(token=create_invite(room_id=room.pk, actor=owner).token, user=guest)  # an invitation
    ban_member(room_id=room.pk, user_id=guest.pk, actor=owner)  # a ban and a room event
    block_user(user=owner, user_id=guest.pk)  # a block
    now = timezone.now()
    PresenceConnection.objects.create(
        connection_id="c1", room_id=1, user_id=owner.pk, process_id="p1", connected_at=now, heartbeat_at=now
    )
    RefreshToken.for_user(owner).blacklist()  # an outstanding and a blacklisted token
    Group.objects.create(name="moderators")
    missing = [model.__name__ for model in admin.site._registry if not model._default_manager.exists()]
    assert not missing, f"give these registered models a row above: {missing}"


def staff_client(*permissions: Permission) -> Client:
    staff = User.objects.create_user(username=f"staff{User.objects.count()}", password="pw-Secret-123", is_staff=True)
    staff.user_permissions.add(*permissions)
    client = Client()
    client.force_login(staff)
    return client


def permission(model: type[Model], action: str) -> Permission:
    opts = model._meta
    return Permission.objects.get(
        content_type__app_label=opts.app_label, codename=get_permission_codename(action, opts)
    )


def admin_urls(model: type[Model], model_admin: admin.ModelAdmin) -> Iterator[tuple[str, str]]:
    """(url name, url) for every page the model's admin serves, on its first row."""
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None
    for pattern in model_admin.get_urls():
        if not isinstance(pattern, URLPattern) or not pattern.name:
            continue
        arguments = {name: str(obj.pk) for name in pattern.pattern.converters if name in OBJECT_ARGUMENTS}
        yield pattern.name, reverse(f"admin:{pattern.name}", kwargs=arguments)


def registered() -> list[tuple[type[Model], admin.ModelAdmin]]:
    return list(admin.site._registry.items())


def test_a_staff_user_without_permissions_gets_403_on_every_admin_page_of_every_model(one_of_each: None) -> None:
    client = staff_client()
    seen = 0
    for model, model_admin in registered():
        for name, url in admin_urls(model, model_admin):
            response = client.get(url, follow=True)  # the bare object URL redirects to its change page
            assert response.status_code == 403, f"{name} {url}: {response.status_code}"
            seen += 1
    assert seen >= 5 * len(registered())


def test_the_view_permission_opens_the_list_and_object_pages_of_its_model_only(one_of_each: None) -> None:
    for model, model_admin in registered():
        client = staff_client(permission(model, "view"))
        urls = dict(admin_urls(model, model_admin))
        info = f"{model._meta.app_label}_{model._meta.model_name}"
        for page in ("changelist", "change", "history"):
            response = client.get(urls[f"{info}_{page}"])
            assert response.status_code == 200, f"{info}_{page}: {response.status_code}"
        for page in ("add", "delete"):
            assert client.get(urls[f"{info}_{page}"]).status_code == 403, f"{info}_{page}"
        others = [m for m in admin.site._registry if m is not model]
        for other in others:
            other_list = reverse(f"admin:{other._meta.app_label}_{other._meta.model_name}_changelist")
            assert client.get(other_list).status_code == 403, f"{info} opened {other_list}"


def test_a_change_permission_alone_does_not_open_a_read_only_admin(one_of_each: None) -> None:
    read_only = [(m, a) for m, a in registered() if isinstance(a, ReadOnlyAdminMixin)]
    assert {m.__name__ for m, _ in read_only} >= {"Message", "OutboxEvent", "PresenceConnection"}
    for model, model_admin in read_only:
        client = staff_client(permission(model, "change"), permission(model, "delete"), permission(model, "add"))
        for name, url in admin_urls(model, model_admin):
            assert client.get(url, follow=True).status_code == 403, name
