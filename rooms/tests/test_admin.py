"""The rooms admin acts only through rooms.services: the count, the messages and the events stay right."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from events.models import OutboxEvent
from messaging.models import Message
from rooms.models import Membership, Room
from rooms.services import create_room, join_room

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(make_user: Any) -> Client:
    admin_user = make_user("root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin_user)
    client.admin_user = admin_user  # type: ignore[attr-defined]
    return client


def _change_data(room: Room, **fields: Any) -> dict[str, Any]:
    count = Membership.objects.filter(room=room).count()
    data = {
        "title": room.title,
        "max_personnel": room.max_personnel,
        "memberships-TOTAL_FORMS": count,
        "memberships-INITIAL_FORMS": count,
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
    }
    data.update(fields)
    return data


def test_adding_a_room_in_the_admin_goes_through_create_room(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/rooms/room/add/",
        {
            "title": "  From admin ",
            "max_personnel": 4,
            "owner": "",
            "personnel": 999,
            "memberships-TOTAL_FORMS": 0,
            "memberships-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    room = Room.objects.get()
    assert room.title == "From admin" and room.owner == admin_client.admin_user  # type: ignore[attr-defined]
    assert room.personnel == 1  # the posted personnel is ignored: read-only
    assert Membership.objects.filter(room=room, user=room.owner, is_active=True).exists()
    assert Message.objects.filter(room=room, kind="ENTER").count() == 1
    assert OutboxEvent.objects.filter(room_id=room.pk, event_type="room.created").exists()


@pytest.mark.parametrize(
    ("fields", "error"),
    [({"title": ""}, "title"), ({"max_personnel": 1}, "max_personnel"), ({"max_personnel": 10001}, "max_personnel")],
)
def test_the_admin_form_refuses_what_the_services_refuse(
    admin_client: Client, fields: dict[str, Any], error: str
) -> None:
    data = {"title": "ok", "max_personnel": 5, "memberships-TOTAL_FORMS": 0, "memberships-INITIAL_FORMS": 0}
    data.update(fields)
    response = admin_client.post("/admin/rooms/room/add/", data)
    assert response.status_code == 200
    assert error in response.context["adminform"].form.errors
    assert not Room.objects.exists()


def test_changing_a_room_goes_through_update_room_and_keeps_personnel(admin_client: Client, make_user: Any) -> None:
    room = create_room(owner=make_user(), title="Before", max_personnel=5)
    for _ in range(2):
        join_room(room_id=room.pk, user=make_user())
    page = admin_client.get(f"/admin/rooms/room/{room.pk}/change/")
    assert page.status_code == 200 and page.content.count(b"memberships-") > 0
    assert b'name="personnel"' not in page.content and b'name="memberships-0-is_active"' not in page.content
    refused = admin_client.post(f"/admin/rooms/room/{room.pk}/change/", _change_data(room, max_personnel=2))
    assert refused.status_code == 200 and refused.context["adminform"].form.errors
    assert Room.objects.get(pk=room.pk).max_personnel == 5
    saved = admin_client.post(
        f"/admin/rooms/room/{room.pk}/change/", _change_data(room, title="After", max_personnel=3, personnel=0)
    )
    assert saved.status_code == 302, saved.content.decode()[:2000]
    room.refresh_from_db()
    assert (room.title, room.max_personnel, room.personnel) == ("After", 3, 3)
    assert OutboxEvent.objects.filter(room_id=room.pk, event_type="room.updated").exists()


def test_deleting_rooms_in_the_admin_goes_through_delete_room(admin_client: Client, make_user: Any) -> None:
    owner = make_user()
    one, two, three = (create_room(owner=owner, title=f"R{i}", max_personnel=5) for i in range(3))
    response = admin_client.post(f"/admin/rooms/room/{one.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    response = admin_client.post(
        "/admin/rooms/room/", {"action": "delete_selected", "_selected_action": [two.pk, three.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert not Room.objects.exists()
    deleted = set(OutboxEvent.objects.filter(event_type="room.deleted").values_list("room_id", flat=True))
    assert deleted == {one.pk, two.pk, three.pk}


def test_room_list_searches_by_title_and_filters_by_seats(admin_client: Client, make_user: Any) -> None:
    owner = make_user()
    full = create_room(owner=owner, title="Alpha full", max_personnel=2)
    join_room(room_id=full.pk, user=make_user())
    create_room(owner=owner, title="Beta", max_personnel=5)
    found = admin_client.get("/admin/rooms/room/", {"q": "alpha"})
    assert [r.pk for r in found.context["cl"].result_list] == [full.pk]
    seats = admin_client.get("/admin/rooms/room/", {"seats": "full"})
    assert [r.pk for r in seats.context["cl"].result_list] == [full.pk]
    assert admin_client.get("/admin/rooms/room/", {"seats": "free"}).context["cl"].result_count == 1


def test_adding_a_membership_joins_and_a_full_room_refuses(admin_client: Client, make_user: Any) -> None:
    room = create_room(owner=make_user(), title="Two seats", max_personnel=2)
    bob, carol = make_user(), make_user()
    response = admin_client.post("/admin/rooms/membership/add/", {"room": room.pk, "user": bob.pk})
    assert response.status_code == 302, response.content.decode()[:2000]
    room.refresh_from_db()
    assert room.personnel == 2
    assert Message.objects.filter(room=room, kind="ENTER", sender=bob).exists()
    refused = admin_client.post("/admin/rooms/membership/add/", {"room": room.pk, "user": carol.pk})
    assert refused.status_code == 200
    assert "full" in str(refused.context["adminform"].form.errors)
    assert not Membership.objects.filter(room=room, user=carol).exists()


def test_the_leave_action_removes_members_through_leave_room(admin_client: Client, make_user: Any) -> None:
    room = create_room(owner=make_user(), title="Exit", max_personnel=5)
    bob = make_user()
    join_room(room_id=room.pk, user=bob)
    membership = Membership.objects.get(room=room, user=bob)
    for _ in range(2):  # twice: the second is a no-op, personnel never below the truth
        response = admin_client.post(
            "/admin/rooms/membership/", {"action": "leave_rooms", "_selected_action": [membership.pk]}
        )
        assert response.status_code == 302
    room.refresh_from_db()
    membership.refresh_from_db()
    assert room.personnel == 1 and not membership.is_active and membership.left_at is not None
    assert Message.objects.filter(room=room, kind="LEAVE", sender=bob).count() == 1


def test_a_rejoin_from_the_admin_reuses_the_membership_row(admin_client: Client, make_user: Any) -> None:
    room = create_room(owner=make_user(), title="Again", max_personnel=5)
    bob = make_user()
    join_room(room_id=room.pk, user=bob)
    from rooms.services import leave_room

    leave_room(room_id=room.pk, user=bob)
    response = admin_client.post("/admin/rooms/membership/add/", {"room": room.pk, "user": bob.pk})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Membership.objects.filter(room=room, user=bob).count() == 1
    assert Membership.objects.get(room=room, user=bob).is_active
    assert Room.objects.get(pk=room.pk).personnel == 2


def test_moderation_rows_are_visible_read_only_and_an_invite_never_shows_its_token(
    admin_client: Client, make_user: Any
) -> None:
    from rooms.models import Invite
    from rooms.services import ban_member, block_user, create_invite, set_role

    owner, member, other = make_user(), make_user(), make_user()
    room = create_room(owner=owner, title="Moderated", max_personnel=5, visibility="private")
    token = create_invite(room_id=room.pk, actor=owner).token
    from rooms.services import accept_invite

    accept_invite(token=token, user=member)
    accept_invite(token=token, user=other)
    set_role(room_id=room.pk, user_id=member.pk, actor=owner, role="moderator")
    ban_member(room_id=room.pk, user_id=other.pk, actor=member)
    block_user(user=owner, user_id=other.pk)
    for path in ("roomevent", "ban", "invite", "block"):
        page = admin_client.get(f"/admin/rooms/{path}/")
        assert page.status_code == 200, path
        assert token not in page.content.decode()
        assert admin_client.get(f"/admin/rooms/{path}/add/").status_code == 403, path
    events = admin_client.get("/admin/rooms/roomevent/").content.decode()
    assert "role.changed" in events and "member.banned" in events
    invite = Invite.objects.get(room=room)
    detail = admin_client.get(f"/admin/rooms/invite/{invite.pk}/change/").content.decode()
    assert token not in detail and invite.token_hash not in detail and invite.token_hash[:8] in detail
    room_page = admin_client.get(f"/admin/rooms/room/{room.pk}/change/").content.decode()
    assert "moderator" in room_page.lower() and "Owner" in room_page  # the roles, in the members inline
    # Without the view permission, a staff user sees none of it.
    staff = make_user(is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get("/admin/rooms/invite/").status_code == 403
