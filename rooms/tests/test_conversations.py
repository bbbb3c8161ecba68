"""Private rooms, roles, kick and ban, invitations, DMs and blocks, through REST and GraphQL (issue 18)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import close_old_connections
from django.utils import timezone

from events.models import OutboxEvent
from messaging.services import send_message
from rooms.models import Ban, Invite, Membership, Room, RoomEvent
from rooms.services import create_room, join_room, token_hash
from rooms.tests.conftest import bearer_client

pytestmark = pytest.mark.django_db


def gql(user: Any, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = bearer_client(user).post("/graphql", {"query": query, "variables": variables or {}}, format="json")
    assert response.status_code in (200, 400), response.content
    return response.json()


def codes(result: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in result.get("errors", [])]


def private_room(owner: Any, **extra: Any) -> Room:
    return create_room(owner=owner, title="Secret plans", max_personnel=extra.pop("max_personnel", 10), visibility="private", **extra)


# --- visibility --------------------------------------------------------------------------------------
def test_a_private_room_is_not_listed_not_searchable_and_404_to_a_non_member_on_every_rest_path(
    make_user: Any, client_for: Any
) -> None:
    owner, stranger = make_user(), make_user()
    room = private_room(owner)
    public = create_room(owner=owner, title="Secret garden", max_personnel=10)
    client = client_for(stranger)
    listed = [r["id"] for r in client.get("/api/rooms").json()["results"]]
    searched = [r["id"] for r in client.get("/api/rooms?search=secret").json()["results"]]
    assert room.pk not in listed and room.pk not in searched
    assert public.pk in listed and public.pk in searched
    for method, path in [
        ("get", f"/api/rooms/{room.pk}"),
        ("get", f"/api/rooms/{room.pk}/messages"),
        ("post", f"/api/rooms/{room.pk}/messages"),
        ("get", f"/api/rooms/{room.pk}/members"),
        ("post", f"/api/rooms/{room.pk}/join"),
        ("post", f"/api/rooms/{room.pk}/leave"),
        ("get", f"/api/rooms/{room.pk}/bans"),
        ("post", f"/api/rooms/{room.pk}/owner"),
        ("post", f"/api/rooms/{room.pk}/read"),
        ("patch", f"/api/rooms/{room.pk}"),
        ("delete", f"/api/rooms/{room.pk}"),
        ("post", f"/api/rooms/{room.pk}/invites"),
        ("post", f"/api/rooms/{room.pk}/members/{owner.pk}/kick"),
    ]:
        body = {"client_id": "c1", "body": "hi", "seq": 1, "title": "x", "user_id": owner.pk} if method in ("post", "patch") else None
        response = getattr(client, method)(path, body, format="json")
        assert response.status_code == 404, (method, path, response.content)
        assert response.json()["code"] == "not_found", (method, path)
    # The same answer as a room that never existed: nothing tells them apart.
    assert client.get("/api/rooms/999999").json() == client.get(f"/api/rooms/{room.pk}").json()
    assert not Membership.objects.filter(room=room, user=stranger).exists()


def test_a_private_room_defaults_to_history_since_join_and_the_owner_sees_its_role(make_user: Any, client_for: Any) -> None:
    owner = make_user()
    response = client_for(owner).post(
        "/api/rooms", {"title": "Club", "max_personnel": 5, "visibility": "private"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["visibility"], body["history_visibility"], body["my_role"], body["kind"]) == (
        "private", "since_join", "owner", "room"
    )
    mine = client_for(owner).get("/api/me/rooms").json()["results"]
    assert [(r["id"], r["my_role"]) for r in mine] == [(body["id"], "owner")]
    bad = client_for(owner).post("/api/rooms", {"title": "x", "max_personnel": 5, "visibility": "secret"}, format="json")
    assert bad.status_code == 400 and "visibility" in bad.json()["fields"]


def test_graphql_hides_a_private_room_from_non_members_in_room_rooms_and_leave_time(make_user: Any) -> None:
    owner, stranger = make_user(), make_user()
    room = private_room(owner)
    result = gql(stranger, "query($id: Int!) { room(id: $id) { id } }", {"id": room.pk})
    assert codes(result) == ["not_found"]
    result = gql(stranger, "query($id: Int!) { leaveTime(roomId: $id) }", {"id": room.pk})
    assert codes(result) == ["not_found"]
    result = gql(stranger, "query($id: Int!) { missedMessages(roomId: $id) { id } }", {"id": room.pk})
    assert codes(result) == ["not_found"]
    result = gql(stranger, '{ rooms(search: "Secret") { edges { node { id } } } }')
    assert result["data"]["rooms"]["edges"] == []
    result = gql(stranger, "mutation($id: Int!) { joinRoom(roomId: $id) { ok error } }", {"id": room.pk})
    assert result["data"]["joinRoom"] == {"ok": False, "error": "not_found"}
    result = gql(owner, "query($id: Int!) { room(id: $id) { kind visibility historyVisibility myRole } }", {"id": room.pk})
    assert result["data"]["room"] == {
        "kind": "room", "visibility": "private", "historyVisibility": "since_join", "myRole": "owner"
    }


# --- roles, kick, ban --------------------------------------------------------------------------------
def test_the_owner_makes_a_moderator_who_may_kick_members_but_not_the_owner_or_another_moderator(
    make_user: Any, client_for: Any
) -> None:
    owner, mod, mod2, member = make_user(), make_user(), make_user(), make_user()
    room = create_room(owner=owner, title="Town", max_personnel=10)
    for user in (mod, mod2, member):
        join_room(room_id=room.pk, user=user)
    for user in (mod, mod2):
        response = client_for(owner).post(f"/api/rooms/{room.pk}/members/{user.pk}/role", {"role": "moderator"}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["role"] == "moderator" and response.json()["user"]["id"] == user.pk
    assert client_for(mod).post(f"/api/rooms/{room.pk}/members/{member.pk}/role", {"role": "moderator"}, format="json").status_code == 403
    assert client_for(owner).post(f"/api/rooms/{room.pk}/members/{member.pk}/role", {"role": "owner"}, format="json").status_code == 400
    for target in (owner, mod2):
        for action in ("kick", "ban"):
            response = client_for(mod).post(f"/api/rooms/{room.pk}/members/{target.pk}/{action}")
            assert response.status_code == 403 and response.json()["code"] == "forbidden", (action, target)
    assert client_for(member).post(f"/api/rooms/{room.pk}/members/{mod.pk}/kick").status_code == 403
    personnel = Room.objects.get(pk=room.pk).personnel
    response = client_for(mod).post(f"/api/rooms/{room.pk}/members/{member.pk}/kick")
    assert response.status_code == 200, response.content
    assert response.json()["role"] is None and response.json()["room"]["personnel"] == personnel - 1
    assert not Membership.objects.get(room=room, user=member).is_active
    # Kicked: may come back (a public room); a second kick finds no member.
    assert client_for(mod).post(f"/api/rooms/{room.pk}/members/{member.pk}/kick").status_code == 404
    assert client_for(member).post(f"/api/rooms/{room.pk}/join").status_code == 200
    events = list(RoomEvent.objects.filter(room=room).order_by("seq").values_list("type", flat=True))
    assert events == ["role.changed", "role.changed", "member.kicked"]
    kafka = list(
        OutboxEvent.objects.filter(room_id=room.pk, event_type__in=["role.changed", "member.kicked"])
        .order_by("id").values_list("event_type", "topic", "payload")
    )
    assert [(t, topic) for t, topic, _ in kafka] == [
        ("role.changed", "chattalk.memberships"), ("role.changed", "chattalk.memberships"),
        ("member.kicked", "chattalk.memberships"),
    ]
    kicked = kafka[-1][2]["data"]
    assert kicked["user"]["id"] == member.pk and kicked["by"]["id"] == mod.pk and kicked["seq"] > 0


def test_a_banned_user_cannot_come_back_by_join_or_invitation_until_unbanned(make_user: Any, client_for: Any) -> None:
    owner, member = make_user(), make_user()
    room = create_room(owner=owner, title="Town", max_personnel=10)
    join_room(room_id=room.pk, user=member)
    response = client_for(owner).post(f"/api/rooms/{room.pk}/members/{member.pk}/ban")
    assert response.status_code == 200, response.content
    assert response.json()["room"]["personnel"] == 1
    again = client_for(owner).post(f"/api/rooms/{room.pk}/members/{member.pk}/ban")
    assert again.status_code == 200
    assert RoomEvent.objects.filter(room=room, type="member.banned").count() == 1, "a repeated ban takes no seq"
    joined = client_for(member).post(f"/api/rooms/{room.pk}/join")
    assert joined.status_code == 403 and joined.json()["code"] == "banned"
    gql_join = gql(member, "mutation($id: Int!) { joinRoom(roomId: $id) { ok error } }", {"id": room.pk})
    assert gql_join["data"]["joinRoom"] == {"ok": False, "error": "banned"}
    token = client_for(owner).post(f"/api/rooms/{room.pk}/invites", {}, format="json").json()["token"]
    accepted = client_for(member).post(f"/api/invites/{token}/accept")
    assert accepted.status_code == 403 and accepted.json()["code"] == "banned"
    assert Invite.objects.get(room=room).uses == 0, "a refused accept uses nothing"
    assert Room.objects.get(pk=room.pk).personnel == 1
    bans = client_for(owner).get(f"/api/rooms/{room.pk}/bans").json()["results"]
    assert [b["user"]["id"] for b in bans] == [member.pk]
    assert client_for(owner).delete(f"/api/rooms/{room.pk}/members/{member.pk}/ban").status_code == 204
    assert client_for(member).post(f"/api/rooms/{room.pk}/join").status_code == 200
    types = list(RoomEvent.objects.filter(room=room).order_by("seq").values_list("type", flat=True))
    assert types == ["member.banned", "member.unbanned"]


def test_the_owner_hands_over_the_room_and_stays_as_a_moderator(make_user: Any, client_for: Any) -> None:
    owner, heir = make_user(), make_user()
    room = create_room(owner=owner, title="Town", max_personnel=10)
    join_room(room_id=room.pk, user=heir)
    assert client_for(heir).post(f"/api/rooms/{room.pk}/owner", {"user_id": heir.pk}, format="json").status_code == 403
    response = client_for(owner).post(f"/api/rooms/{room.pk}/owner", {"user_id": heir.pk}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["role"] == "owner" and response.json()["room"]["owner"]["id"] == heir.pk
    roles = dict(Membership.objects.filter(room=room).values_list("user_id", "role"))
    assert roles == {owner.pk: "moderator", heir.pk: "owner"}
    # The former owner, now a moderator, cannot act on the new owner.
    assert client_for(owner).post(f"/api/rooms/{room.pk}/members/{heir.pk}/kick").status_code == 403
    frames = [e.frame() for e in RoomEvent.objects.filter(room=room).order_by("seq")]
    assert [(f["type"], f["user"]["id"], f["role"]) for f in frames] == [
        ("role.changed", heir.pk, "owner"), ("role.changed", owner.pk, "moderator")
    ]


def test_a_moderator_deletes_another_members_message(make_user: Any, client_for: Any) -> None:
    owner, mod, member = make_user(), make_user(), make_user()
    room = create_room(owner=owner, title="Town", max_personnel=10)
    join_room(room_id=room.pk, user=mod)
    join_room(room_id=room.pk, user=member)
    message = send_message(room_id=room.pk, sender=member, client_id="m1", body="spam").message
    assert client_for(mod).delete(f"/api/rooms/{room.pk}/messages/{message['id']}").status_code == 403
    client_for(owner).post(f"/api/rooms/{room.pk}/members/{mod.pk}/role", {"role": "moderator"}, format="json")
    response = client_for(mod).delete(f"/api/rooms/{room.pk}/messages/{message['id']}")
    assert response.status_code == 200 and response.json()["deleted_at"] is not None


def test_graphql_moderation_mutations_answer_refusals_as_data(make_user: Any) -> None:
    owner, member, other = make_user(), make_user(), make_user()
    room = create_room(owner=owner, title="Town", max_personnel=10)
    join_room(room_id=room.pk, user=member)
    join_room(room_id=room.pk, user=other)
    role = """mutation($r: Int!, $u: Int!) { setMemberRole(roomId: $r, userId: $u, role: "moderator") {
      ok error role user { id } } }"""
    assert gql(member, role, {"r": room.pk, "u": other.pk})["data"]["setMemberRole"]["error"] == "forbidden"
    result = gql(owner, role, {"r": room.pk, "u": member.pk})["data"]["setMemberRole"]
    assert result == {"ok": True, "error": None, "role": "moderator", "user": {"id": member.pk}}
    ban = "mutation($r: Int!, $u: Int!) { banMember(roomId: $r, userId: $u) { ok error room { personnel } } }"
    assert gql(member, ban, {"r": room.pk, "u": other.pk})["data"]["banMember"] == {
        "ok": True, "error": None, "room": {"personnel": 2}
    }
    kick = "mutation($r: Int!, $u: Int!) { kickMember(roomId: $r, userId: $u) { ok error } }"
    assert gql(member, kick, {"r": room.pk, "u": owner.pk})["data"]["kickMember"] == {"ok": False, "error": "forbidden"}
    assert Ban.objects.filter(room=room, user=other).exists()


# --- invitations -------------------------------------------------------------------------------------
def test_an_invite_link_lets_users_into_a_private_room_until_its_uses_run_out(make_user: Any, client_for: Any) -> None:
    owner, first, second, third = make_user(), make_user(), make_user(), make_user()
    room = private_room(owner)
    response = client_for(owner).post(f"/api/rooms/{room.pk}/invites", {"max_uses": 2}, format="json")
    assert response.status_code == 201, response.content
    invite = response.json()
    assert set(invite) >= {"token", "room", "user", "max_uses", "uses", "expires_at"}
    assert (invite["max_uses"], invite["uses"], invite["user"]) == (2, 0, None)
    token = invite["token"]
    assert len(token) >= 32
    stored = Invite.objects.get(room=room)
    assert stored.token_hash == token_hash(token) and token not in str(stored.__dict__), "only the hash is stored"
    for user in (first, second):
        accepted = client_for(user).post(f"/api/invites/{token}/accept")
        assert accepted.status_code == 200, accepted.content
        assert accepted.json()["member"] is True and accepted.json()["room"]["my_role"] == "member"
    assert client_for(first).post(f"/api/invites/{token}/accept").status_code == 200, "a member accepting again"
    used_up = client_for(third).post(f"/api/invites/{token}/accept")
    assert used_up.status_code == 410 and used_up.json()["code"] == "invite_used_up"
    assert Invite.objects.get(room=room).uses == 2
    assert client_for(first).get(f"/api/rooms/{room.pk}/messages").status_code == 200
    bogus = client_for(third).post("/api/invites/not-a-token/accept")
    assert bogus.status_code == 404 and bogus.json()["code"] == "invite_invalid"


def test_an_expired_a_revoked_and_someone_elses_invite_are_refused_with_their_codes(make_user: Any, client_for: Any) -> None:
    owner, invitee, other = make_user(), make_user(), make_user()
    room = private_room(owner)
    owner_client = client_for(owner)
    personal = owner_client.post(f"/api/rooms/{room.pk}/invites", {"user_id": invitee.pk}, format="json").json()
    assert personal["user"]["id"] == invitee.pk and personal["max_uses"] == 1
    refused = client_for(other).post(f"/api/invites/{personal['token']}/accept")
    assert refused.status_code == 403 and refused.json()["code"] == "invite_not_for_you"
    expiring = owner_client.post(f"/api/rooms/{room.pk}/invites", {"expires_in_seconds": 60}, format="json").json()
    Invite.objects.filter(token_hash=token_hash(expiring["token"])).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = client_for(other).post(f"/api/invites/{expiring['token']}/accept")
    assert expired.status_code == 410 and expired.json()["code"] == "invite_expired"
    link = owner_client.post(f"/api/rooms/{room.pk}/invites", {}, format="json").json()
    assert owner_client.delete(f"/api/rooms/{room.pk}/invites/{link['token']}").status_code == 204
    revoked = client_for(other).post(f"/api/invites/{link['token']}/accept")
    assert revoked.status_code == 404 and revoked.json()["code"] == "invite_invalid"
    assert owner_client.delete(f"/api/rooms/{room.pk}/invites/{link['token']}").status_code == 404
    assert client_for(invitee).post(f"/api/invites/{personal['token']}/accept").status_code == 200
    assert not Membership.objects.filter(room=room, user=other).exists()
    # Only the owner or a moderator invites; a plain member is refused.
    assert client_for(invitee).post(f"/api/rooms/{room.pk}/invites", {}, format="json").status_code == 403
    bad = owner_client.post(f"/api/rooms/{room.pk}/invites", {"max_uses": 0}, format="json")
    assert bad.status_code == 400 and "max_uses" in bad.json()["fields"]


def test_the_owner_and_moderators_list_usable_invites_without_tokens_and_revoke_them_by_id(
    make_user: Any, client_for: Any
) -> None:
    owner, mod, member, stranger = make_user(), make_user(), make_user(), make_user()
    room = private_room(owner)
    owner_client = client_for(owner)
    for user in (mod, member):
        accept_token = owner_client.post(f"/api/rooms/{room.pk}/invites", {"user_id": user.pk}, format="json").json()
        assert client_for(user).post(f"/api/invites/{accept_token['token']}/accept").status_code == 200
    owner_client.post(f"/api/rooms/{room.pk}/members/{mod.pk}/role", {"role": "moderator"}, format="json")
    link = owner_client.post(f"/api/rooms/{room.pk}/invites", {"max_uses": 5}, format="json").json()
    expiring = owner_client.post(f"/api/rooms/{room.pk}/invites", {}, format="json").json()
    Invite.objects.filter(pk=expiring["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    listed = client_for(mod).get(f"/api/rooms/{room.pk}/invites")
    assert listed.status_code == 200
    # Used-up (the two accepted personal invites) and expired ones are not listed; no token anywhere.
    assert [i["id"] for i in listed.json()["results"]] == [link["id"]]
    assert link["token"] not in listed.content.decode() and "token" not in listed.json()["results"][0]
    assert listed.json()["results"][0]["created_by"]["id"] == owner.pk
    assert client_for(member).get(f"/api/rooms/{room.pk}/invites").status_code == 403
    assert client_for(stranger).get(f"/api/rooms/{room.pk}/invites").status_code == 404  # not revealed
    assert client_for(member).delete(f"/api/rooms/{room.pk}/invites/by-id/{link['id']}").status_code == 403
    assert client_for(mod).delete(f"/api/rooms/{room.pk}/invites/by-id/{link['id']}").status_code == 204
    assert client_for(mod).delete(f"/api/rooms/{room.pk}/invites/by-id/{link['id']}").json()["code"] == "invite_invalid"
    assert client_for(stranger).post(f"/api/invites/{link['token']}/accept").json()["code"] == "invite_invalid"
    assert owner_client.get(f"/api/rooms/{room.pk}/invites").json()["results"] == []
    # An invite of another room is not this room's to revoke.
    other_room = private_room(owner)
    elsewhere = owner_client.post(f"/api/rooms/{other_room.pk}/invites", {}, format="json").json()
    assert owner_client.delete(f"/api/rooms/{room.pk}/invites/by-id/{elsewhere['id']}").status_code == 404
    assert owner_client.delete(f"/api/rooms/{room.pk}/invites/by-id/{2**70}").status_code == 404


def test_an_invite_to_a_username_is_for_that_user_only(make_user: Any, client_for: Any) -> None:
    owner, invitee, other = make_user(), make_user("Kim-Invited"), make_user()
    room = private_room(owner)
    owner_client = client_for(owner)
    made = owner_client.post(f"/api/rooms/{room.pk}/invites", {"username": "@kim-invited"}, format="json")
    assert made.status_code == 201 and made.json()["user"]["id"] == invitee.pk and made.json()["max_uses"] == 1
    token = made.json()["token"]
    assert client_for(other).post(f"/api/invites/{token}/accept").json()["code"] == "invite_not_for_you"
    assert client_for(invitee).post(f"/api/invites/{token}/accept").status_code == 200
    unknown = owner_client.post(f"/api/rooms/{room.pk}/invites", {"username": "nobody-here"}, format="json")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    both = owner_client.post(f"/api/rooms/{room.pk}/invites", {"username": "x", "user_id": other.pk}, format="json")
    assert both.status_code == 400 and "username" in both.json()["fields"]
    for bad in ("", 5, "x" * 151):
        refused = owner_client.post(f"/api/rooms/{room.pk}/invites", {"username": bad}, format="json")
        assert refused.status_code == 400 and "username" in refused.json()["fields"], bad


def test_accepting_an_invite_into_a_full_room_is_room_full_and_uses_nothing(make_user: Any, client_for: Any) -> None:
    owner, guest, late = make_user(), make_user(), make_user()
    room = private_room(owner, max_personnel=2)
    token = client_for(owner).post(f"/api/rooms/{room.pk}/invites", {"max_uses": 5}, format="json").json()["token"]
    assert client_for(guest).post(f"/api/invites/{token}/accept").status_code == 200
    full = client_for(late).post(f"/api/invites/{token}/accept")
    assert full.status_code == 409 and full.json()["code"] == "room_full"
    assert Invite.objects.get(room=room).uses == 1
    assert Room.objects.get(pk=room.pk).personnel == 2


def test_invite_creation_is_rate_limited(make_user: Any, client_for: Any, settings: Any) -> None:
    settings.INVITES_CREATED_PER_HOUR = 2
    owner = make_user()
    room = private_room(owner)
    client = client_for(owner)
    statuses = [client.post(f"/api/rooms/{room.pk}/invites", {}, format="json").status_code for _ in range(3)]
    assert statuses == [201, 201, 429]


# --- direct messages and blocks ----------------------------------------------------------------------
def test_opening_a_dm_twice_from_either_side_gives_the_same_private_conversation(make_user: Any, client_for: Any) -> None:
    alice, bob, eve = make_user(), make_user(), make_user()
    first = client_for(alice).post("/api/dms", {"user_id": bob.pk}, format="json")
    assert first.status_code == 201, first.content
    room = first.json()
    assert (room["kind"], room["visibility"], room["history_visibility"], room["max_personnel"], room["personnel"]) == (
        "dm", "private", "all", 2, 2
    )
    again = client_for(alice).post("/api/dms", {"user_id": bob.pk}, format="json")
    other_side = client_for(bob).post("/api/dms", {"user_id": alice.pk}, format="json")
    assert (again.status_code, other_side.status_code) == (200, 200)
    assert again.json()["id"] == other_side.json()["id"] == room["id"]
    assert Room.objects.filter(kind="dm").count() == 1
    assert room["id"] not in [r["id"] for r in client_for(eve).get("/api/rooms").json()["results"]]
    assert client_for(eve).get(f"/api/rooms/{room['id']}").status_code == 404
    assert client_for(eve).post(f"/api/rooms/{room['id']}/join").status_code == 404
    assert room["id"] in [r["id"] for r in client_for(bob).get("/api/me/rooms").json()["results"]]
    assert client_for(alice).post("/api/dms", {"user_id": alice.pk}, format="json").status_code == 400
    assert client_for(alice).post("/api/dms", {"user_id": 10**9}, format="json").status_code == 404


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_both_users_opening_their_dm_at_the_same_moment_get_one_conversation(make_user: Any) -> None:
    alice, bob = make_user(), make_user()
    barrier = threading.Barrier(8)
    answers: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def open_it(user: Any, other: Any) -> None:
        try:
            barrier.wait()
            response = bearer_client(user).post("/api/dms", {"user_id": other.pk}, format="json")
            answers.append((response.status_code, response.json()["id"]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=open_it, args=(alice, bob) if i % 2 else (bob, alice)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len({room_id for _, room_id in answers}) == 1
    assert sorted(status for status, _ in answers) == [200] * 7 + [201]
    assert Room.objects.filter(kind="dm").count() == 1
    assert Room.objects.get(kind="dm").personnel == 2


def test_a_block_refuses_a_new_dm_and_sends_into_the_existing_one_until_lifted(make_user: Any, client_for: Any) -> None:
    alice, bob, carol = make_user(), make_user(), make_user()
    room_id = client_for(alice).post("/api/dms", {"user_id": bob.pk}, format="json").json()["id"]
    assert client_for(alice).post("/api/me/blocks", {"user_id": bob.pk}, format="json").status_code == 204
    assert client_for(alice).post("/api/me/blocks", {"user_id": bob.pk}, format="json").status_code == 204
    assert [b["user"]["id"] for b in client_for(alice).get("/api/me/blocks").json()["results"]] == [bob.pk]
    sent = client_for(bob).post(f"/api/rooms/{room_id}/messages", {"client_id": "b1", "body": "hey"}, format="json")
    assert sent.status_code == 403 and sent.json()["code"] == "blocked"
    Room.objects.filter(pk=room_id).delete()
    fresh = client_for(bob).post("/api/dms", {"user_id": alice.pk}, format="json")
    assert fresh.status_code == 403 and fresh.json()["code"] == "blocked"
    # A block is about DMs: the two still talk in rooms they share.
    room = create_room(owner=alice, title="Town", max_personnel=5)
    join_room(room_id=room.pk, user=bob)
    assert send_message(room_id=room.pk, sender=bob, client_id="t1", body="hello").created
    assert client_for(carol).post("/api/dms", {"user_id": alice.pk}, format="json").status_code == 201
    assert client_for(alice).delete(f"/api/me/blocks/{bob.pk}").status_code == 204
    assert client_for(bob).post("/api/dms", {"user_id": alice.pk}, format="json").status_code == 201


def test_a_send_into_a_dm_is_blocked_by_a_block_either_way_between_its_two_users_only(make_user: Any) -> None:
    from rooms.models import Block
    from rooms.services import dm_send_blocked, open_dm

    alice, bob, carol = make_user(), make_user(), make_user()
    dm = open_dm(user=alice, user_id=bob.pk).room
    other_dm = open_dm(user=alice, user_id=carol.pk).room
    room = create_room(owner=alice, title="Town", max_personnel=5)
    assert not dm_send_blocked(dm.pk) and not dm_send_blocked(room.pk)
    Block.objects.create(blocker=carol, blocked=bob, created_at=timezone.now())  # not this DM's pair
    assert not dm_send_blocked(dm.pk)
    for blocker, blocked in ((bob, alice), (alice, bob)):
        block = Block.objects.create(blocker=blocker, blocked=blocked, created_at=timezone.now())
        assert dm_send_blocked(dm.pk)
        assert not dm_send_blocked(other_dm.pk) and not dm_send_blocked(room.pk)
        block.delete()
    assert not dm_send_blocked(dm.pk)


def test_the_migration_gives_each_existing_owner_the_owner_role(make_user: Any) -> None:
    import importlib

    from django.apps import apps

    migration = importlib.import_module("rooms.migrations.0002_conversations_roles")
    owner, member = make_user(), make_user()
    room = create_room(owner=owner, title="Old", max_personnel=5)
    join_room(room_id=room.pk, user=member)
    Membership.objects.filter(room=room).update(role="member")  # as rows were before roles
    migration.owners_get_their_role(apps, None)
    assert dict(Membership.objects.filter(room=room).values_list("user_id", "role")) == {
        owner.pk: "owner", member.pk: "member"
    }


def test_the_pages_join_button_of_a_banned_user_answers_with_a_message_not_an_error(make_user: Any) -> None:
    from django.test import Client

    from rooms.services import ban_member

    owner, banned = make_user(), make_user()
    room = create_room(owner=owner, title="Town", max_personnel=5)
    ban_member(room_id=room.pk, user_id=banned.pk, actor=owner)
    client = Client()
    client.force_login(banned)
    response = client.post(f"/rooms/{room.pk}/join/", follow=True)
    assert response.status_code == 200
    assert "banned" in response.content.decode()
    assert not Membership.objects.filter(room=room, user=banned, is_active=True).exists()
