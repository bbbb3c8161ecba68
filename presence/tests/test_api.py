"""GET /api/rooms/{id}/members and the admin page, against each store."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.testing import access_token_for
from presence import services
from rooms.services import leave_room

from .factories import make_room, make_user

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token_for(user)}")
    return client


def test_members_lists_every_member_with_read_position_and_presence(presence_backend):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    room = make_room(alice, bob, carol)
    leave_room(room_id=room.pk, user=carol)
    services.connection_opened(room_id=room.pk, user_id=bob.pk, connection_id="b1", process_id="p")

    response = client_for(alice).get(f"/api/rooms/{room.pk}/members")
    assert response.status_code == 200
    body = response.json()
    assert body["has_more"] is False
    rows = {row["user"]["id"]: row for row in body["results"]}
    assert set(rows) == {alice.pk, bob.pk}  # carol left: members only
    assert rows[bob.pk]["connected"] is True and rows[alice.pk]["connected"] is False
    assert rows[bob.pk]["user"] == {"id": bob.pk, "username": bob.username, "nickname": "bob"}
    assert set(rows[alice.pk]) == {"user", "joined_at", "last_read_seq", "connected", "left_at", "role"}
    assert (rows[alice.pk]["role"], rows[bob.pk]["role"]) == ("owner", "member")
    assert rows[alice.pk]["joined_at"] is not None and rows[alice.pk]["left_at"] is None
    assert isinstance(rows[alice.pk]["last_read_seq"], int)


def test_members_query_count_does_not_grow_with_members(presence_backend):
    alice = make_user("alice")
    room = make_room(alice, *[make_user("m") for _ in range(2)])
    client = client_for(alice)
    client.get(f"/api/rooms/{room.pk}/members")  # warm the auth path
    with CaptureQueriesContext(connection) as few:
        client.get(f"/api/rooms/{room.pk}/members")
    room_more = make_room(alice, *[make_user("n") for _ in range(8)])
    with CaptureQueriesContext(connection) as many:
        client.get(f"/api/rooms/{room_more.pk}/members")
    assert len(many) == len(few)


def test_members_refuses_non_members_unknown_rooms_and_anonymous_callers(presence_backend):
    alice, mallory = make_user("alice"), make_user("mallory")
    room = make_room(alice)
    refused = client_for(mallory).get(f"/api/rooms/{room.pk}/members")
    assert refused.status_code == 403 and refused.json()["code"] == "not_member"
    missing = client_for(alice).get(f"/api/rooms/{room.pk + 1000}/members")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    anonymous = APIClient().get(f"/api/rooms/{room.pk}/members")
    assert anonymous.status_code == 401


def test_admin_shows_who_is_connected_where_and_changes_nothing(presence_backend):
    from django.test import Client

    from accounts.models import User

    staff = User.objects.create_superuser(username="root", password="pw-not-used-1")
    alice = make_user("alice")
    room = make_room(alice)
    services.connection_opened(room_id=room.pk, user_id=alice.pk, connection_id="tab-xyz", process_id="web-7")
    client = Client()
    client.force_login(staff)
    page = client.get("/admin/presence/presenceconnection/")
    assert page.status_code == 200
    html = page.content.decode()
    assert alice.username in html and "web-7" in html and room.title in html and presence_backend.name in html
    assert client.get("/admin/presence/presenceconnection/add/").status_code == 403
