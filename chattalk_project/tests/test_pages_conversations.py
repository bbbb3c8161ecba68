"""The pages of conversations without a browser (issue 18): a private room made from the list page, the
invitation page (join, and every refusal shown without revealing the room), DMs named after the other user,
and the members panel's start state."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from chattalk_project.tests.test_pages import logged_in, user
from rooms.models import Invite, Membership, Room
from rooms.services import ban_member, create_invite, create_room, join_room, open_dm

pytestmark = pytest.mark.django_db


def test_the_room_list_creates_a_private_room_that_it_then_does_not_list() -> None:
    user("owner")
    user("other")
    response = logged_in("owner").post("/rooms/new/", {"title": "Hideout", "max_personnel": "5", "visibility": "private"})
    room = Room.objects.get(title="Hideout")
    assert response.status_code == 302 and response["Location"] == f"/rooms/{room.pk}/"
    assert (room.visibility, room.history_visibility) == ("private", "since_join")
    assert "Hideout" not in logged_in("other").get("/rooms/").content.decode()
    assert "Hideout" in logged_in("owner").get(f"/rooms/{room.pk}/").content.decode()
    public = logged_in("owner").post("/rooms/new/", {"title": "Square", "max_personnel": "5"})
    assert public.status_code == 302 and Room.objects.get(title="Square").visibility == "public"
    bad = logged_in("owner").post("/rooms/new/", {"title": "Odd", "max_personnel": "5", "visibility": "secret"})
    assert bad.status_code == 400 and not Room.objects.filter(title="Odd").exists()


def test_the_invitation_page_shows_the_room_and_joins_it_on_post() -> None:
    owner, guest = user("owner"), user("guest")
    room = create_room(owner=owner, title="Hideout", max_personnel=5, visibility="private")
    token = create_invite(room_id=room.pk, actor=owner).token
    page = logged_in("guest").get(f"/invites/{token}/")
    assert page.status_code == 200 and "Hideout" in page.content.decode()
    assert not Membership.objects.filter(room=room, user=guest).exists()  # looking joins nothing
    joined = logged_in("guest").post(f"/invites/{token}/")
    assert joined.status_code == 302 and joined["Location"] == f"/rooms/{room.pk}/"
    assert Membership.objects.get(room=room, user=guest).is_active
    # A member opening the link again goes straight to the room.
    again = logged_in("guest").get(f"/invites/{token}/")
    assert again.status_code == 302 and again["Location"] == f"/rooms/{room.pk}/"


def test_the_invitation_page_refuses_with_a_reason_and_never_names_the_room() -> None:
    owner, stranger, banned, invitee = user("owner"), user("stranger"), user("banned"), user("invitee")
    room = create_room(owner=owner, title="Hideout", max_personnel=5, visibility="private")
    personal = create_invite(room_id=room.pk, actor=owner, user_id=invitee.pk).token
    expired = create_invite(room_id=room.pk, actor=owner)
    Invite.objects.filter(pk=expired.invite.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    ban_member(room_id=room.pk, user_id=banned.pk, actor=owner)
    link = create_invite(room_id=room.pk, actor=owner).token
    cases = [
        ("stranger", "x" * 43, "get", 404, "does not exist"),
        ("stranger", personal, "get", 403, "for another user"),
        ("stranger", expired.token, "get", 410, "expired"),
        ("banned", link, "post", 403, "banned"),
    ]
    for username, token, method, status, text in cases:
        response = getattr(logged_in(username), method)(f"/invites/{token}/")
        body = response.content.decode()
        assert response.status_code == status and text in body, (username, status, response.status_code)
        assert "Hideout" not in body
    assert not Membership.objects.filter(room=room, user__in=[stranger, banned]).exists()


def test_the_invitation_page_sends_a_visitor_to_log_in_first() -> None:
    owner = user("owner")
    room = create_room(owner=owner, title="Hideout", max_personnel=5, visibility="private")
    token = create_invite(room_id=room.pk, actor=owner).token
    anonymous = Client().get(f"/invites/{token}/")
    assert anonymous.status_code == 302 and anonymous["Location"] == f"/login/?next=/invites/{token}/"


def test_a_dm_is_named_after_the_other_user_in_the_sidebar_and_on_its_page() -> None:
    alice, bob = user("alice"), user("bob")
    bob.nickname = "Bobby"
    bob.save()
    dm = open_dm(user=alice, user_id=bob.pk).room
    page = logged_in("alice").get(f"/rooms/{dm.pk}/")
    assert page.status_code == 200
    sidebar = {room["id"]: room["title"] for room in page.context["sidebar_rooms"]}
    assert sidebar[dm.pk] == "Bobby" and page.context["room_title"] == "Bobby"
    assert logged_in("bob").get("/rooms/").context["sidebar_rooms"][0]["title"] == "alice"  # no nickname


def test_the_members_panel_config_carries_the_viewers_role_and_no_secret() -> None:
    owner, member = user("owner"), user("member")
    room = create_room(owner=owner, title="Hall", max_personnel=5)
    join_room(room_id=room.pk, user=member)
    for username, role in (("owner", "owner"), ("member", "member")):
        page = logged_in(username).get(f"/rooms/{room.pk}/")
        config = page.context["members_config"]
        assert (config["myRole"], config["kind"], config["roomId"]) == (role, "room", room.pk)
        assert config["invitePageBase"] == "http://testserver/invites/"
        assert json.dumps(config["strings"])  # serialisable: rendered by json_script
