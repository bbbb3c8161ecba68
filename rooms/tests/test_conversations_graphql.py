"""GraphQL of conversations (issue 18): invitations, DMs, blocks, unban and ownership as mutations that
answer refusals as data, `roomInvites`, and private rooms and DMs invisible to non-members in every query."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from messaging.models import Message
from messaging.services import send_message
from rooms.models import Ban, Block, Invite, Membership, Room
from rooms.services import ban_member, create_room, join_room
from rooms.tests.conftest import bearer_client
from rooms.tests.test_conversations import gql, private_room

pytestmark = pytest.mark.django_db

CREATE = """mutation($r: Int!, $u: Int, $n: String, $m: Int, $e: Int) {
  createInvite(roomId: $r, userId: $u, username: $n, maxUses: $m, expiresInSeconds: $e) {
    ok error invite { id token user { id } createdBy { id } maxUses uses expiresAt createdAt } room { id myRole }
  }
}"""
ACCEPT = "mutation($t: String!) { acceptInvite(token: $t) { ok error room { id myRole isMember } } }"
REVOKE = "mutation($r: Int!, $t: String, $i: Int) { revokeInvite(roomId: $r, token: $t, inviteId: $i) { ok error } }"
LIST = "query($r: Int!) { roomInvites(roomId: $r) { id token maxUses uses user { id } } }"
OPEN_DM = "mutation($u: Int!) { openDm(userId: $u) { ok created error room { id kind visibility myRole } } }"


def test_an_invite_link_made_listed_accepted_and_revoked_through_graphql(make_user: Any) -> None:
    owner, guest, late, member = make_user(), make_user(), make_user(), make_user()
    room = private_room(owner)
    made = gql(owner, CREATE, {"r": room.pk, "m": 2, "e": 3600})["data"]["createInvite"]
    assert made["ok"] and made["error"] is None and made["room"] == {"id": room.pk, "myRole": "owner"}
    invite = made["invite"]
    assert len(invite["token"]) == 43 and invite["user"] is None and invite["createdBy"]["id"] == owner.pk
    assert (invite["maxUses"], invite["uses"]) == (2, 0) and invite["expiresAt"] and invite["createdAt"]
    # Only the hash is stored; the list never shows a token.
    assert Invite.objects.get(pk=invite["id"]).token_hash != invite["token"]
    assert gql(owner, LIST, {"r": room.pk})["data"]["roomInvites"] == [
        {"id": invite["id"], "token": None, "maxUses": 2, "uses": 0, "user": None}
    ]
    accepted = gql(guest, ACCEPT, {"t": invite["token"]})["data"]["acceptInvite"]
    assert accepted == {"ok": True, "error": None, "room": {"id": room.pk, "myRole": "member", "isMember": True}}
    # A plain member may neither list nor make invitations; a stranger learns nothing of the room.
    assert gql(guest, LIST, {"r": room.pk})["errors"][0]["extensions"]["code"] == "forbidden"
    assert gql(member, LIST, {"r": room.pk})["errors"][0]["extensions"]["code"] == "not_found"
    assert gql(guest, CREATE, {"r": room.pk})["data"]["createInvite"] == {
        "ok": False,
        "error": "forbidden",
        "invite": None,
        "room": None,
    }
    assert gql(member, CREATE, {"r": room.pk})["data"]["createInvite"]["error"] == "not_found"
    # Revoke by the listed id; then the token is refused, and revoking twice is invite_invalid.
    assert gql(guest, REVOKE, {"r": room.pk, "i": invite["id"]})["data"]["revokeInvite"]["error"] == "forbidden"
    assert gql(owner, REVOKE, {"r": room.pk, "i": invite["id"]})["data"]["revokeInvite"] == {"ok": True, "error": None}
    assert gql(late, ACCEPT, {"t": invite["token"]})["data"]["acceptInvite"] == {
        "ok": False,
        "error": "invite_invalid",
        "room": None,
    }
    assert gql(owner, REVOKE, {"r": room.pk, "t": invite["token"]})["data"]["revokeInvite"]["error"] == "invite_invalid"
    assert gql(owner, REVOKE, {"r": room.pk})["data"]["revokeInvite"]["error"] == "validation_error"
    assert gql(owner, REVOKE, {"r": room.pk, "t": "x", "i": 1})["data"]["revokeInvite"]["error"] == "validation_error"
    assert gql(owner, LIST, {"r": room.pk})["data"]["roomInvites"] == []
    assert not Membership.objects.filter(room=room, user=late).exists()


def test_graphql_invitations_refuse_with_the_rest_codes(make_user: Any) -> None:
    owner, invitee, other, banned = make_user(), make_user(), make_user(), make_user()
    room = private_room(owner)
    personal = gql(owner, CREATE, {"r": room.pk, "n": invitee.username})["data"]["createInvite"]["invite"]
    assert personal["user"]["id"] == invitee.pk and personal["maxUses"] == 1
    assert gql(other, ACCEPT, {"t": personal["token"]})["data"]["acceptInvite"]["error"] == "invite_not_for_you"
    expiring = gql(owner, CREATE, {"r": room.pk})["data"]["createInvite"]["invite"]
    Invite.objects.filter(pk=expiring["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert gql(other, ACCEPT, {"t": expiring["token"]})["data"]["acceptInvite"]["error"] == "invite_expired"
    assert gql(invitee, ACCEPT, {"t": personal["token"]})["data"]["acceptInvite"]["ok"]
    used = gql(owner, CREATE, {"r": room.pk, "m": 1})["data"]["createInvite"]["invite"]
    assert gql(other, ACCEPT, {"t": used["token"]})["data"]["acceptInvite"]["ok"]
    assert gql(make_user(), ACCEPT, {"t": used["token"]})["data"]["acceptInvite"]["error"] == "invite_used_up"
    ban_member(room_id=room.pk, user_id=banned.pk, actor=owner)
    link = gql(owner, CREATE, {"r": room.pk})["data"]["createInvite"]["invite"]
    assert gql(banned, ACCEPT, {"t": link["token"]})["data"]["acceptInvite"]["error"] == "banned"
    assert gql(owner, CREATE, {"r": room.pk, "m": 0})["data"]["createInvite"]["error"] == "validation_error"
    for name in ("a\x00b", "a\ud800b", ""):  # never a database error: no user can have such a name
        body = json.dumps({"query": CREATE, "variables": {"r": room.pk, "n": name}})  # \ud800 as an escape
        answer = bearer_client(owner).post("/graphql", data=body, content_type="application/json")
        assert answer.status_code < 500 and "createInvite" not in str(answer.json().get("errors")), answer.content
        assert answer.json()["data"]["createInvite"]["error"] == "validation_error", name
    assert gql(owner, CREATE, {"r": room.pk, "e": 10})["data"]["createInvite"]["error"] == "validation_error"
    assert gql(None, CREATE, {"r": room.pk})["data"]["createInvite"]["error"] == "not_authenticated"
    assert gql(None, ACCEPT, {"t": link["token"]})["data"]["acceptInvite"]["error"] == "not_authenticated"


def test_graphql_invite_creation_counts_against_the_rest_rate_limit(make_user: Any, settings: Any) -> None:
    settings.INVITES_CREATED_PER_HOUR = 2
    owner = make_user()
    room = private_room(owner)
    answers = [gql(owner, CREATE, {"r": room.pk})["data"]["createInvite"]["error"] for _ in range(3)]
    assert answers == [None, None, "rate_limited"]


def test_open_dm_through_graphql_is_one_conversation_from_either_side_and_refused_when_blocked(make_user: Any) -> None:
    alice, bob, carol = make_user(), make_user(), make_user()
    first = gql(alice, OPEN_DM, {"u": bob.pk})["data"]["openDm"]
    assert first["ok"] and first["created"] is True
    assert (
        first["room"]["kind"] == "dm"
        and first["room"]["visibility"] == "private"
        and first["room"]["myRole"] == "member"
    )
    again = gql(bob, OPEN_DM, {"u": alice.pk})["data"]["openDm"]
    assert again["created"] is False and again["room"]["id"] == first["room"]["id"]
    assert Room.objects.filter(kind="dm").count() == 1
    assert gql(alice, OPEN_DM, {"u": alice.pk})["data"]["openDm"]["error"] == "validation_error"
    assert gql(alice, OPEN_DM, {"u": 10**9})["data"]["openDm"]["error"] == "not_found"
    block = "mutation($u: Int!) { blockUser(userId: $u) { ok error } }"
    unblock = "mutation($u: Int!) { unblockUser(userId: $u) { ok error } }"
    assert gql(carol, block, {"u": alice.pk})["data"]["blockUser"] == {"ok": True, "error": None}
    assert gql(carol, block, {"u": alice.pk})["data"]["blockUser"] == {"ok": True, "error": None}  # idempotent
    assert Block.objects.filter(blocker=carol, blocked=alice).count() == 1
    assert gql(alice, OPEN_DM, {"u": carol.pk})["data"]["openDm"] == {
        "ok": False,
        "created": None,
        "error": "blocked",
        "room": None,
    }
    assert gql(carol, block, {"u": carol.pk})["data"]["blockUser"]["error"] == "validation_error"
    assert gql(carol, unblock, {"u": alice.pk})["data"]["unblockUser"] == {"ok": True, "error": None}
    assert gql(alice, OPEN_DM, {"u": carol.pk})["data"]["openDm"]["created"] is True
    # The sends of a blocked DM are refused through GraphQL too, and not stored.
    gql(bob, block, {"u": alice.pk})
    send = 'mutation($r: Int!) { sendMessage(roomId: $r, body: "hi") { ok error } }'
    assert gql(alice, send, {"r": first["room"]["id"]})["data"]["sendMessage"] == {"ok": False, "error": "blocked"}
    assert not Message.objects.filter(room_id=first["room"]["id"], kind="TALK").exists()


def test_unban_and_ownership_transfer_through_graphql(make_user: Any) -> None:
    owner, mod, member, outcast = make_user(), make_user(), make_user(), make_user()
    room = create_room(owner=owner, title="Hall", max_personnel=10)
    for user in (mod, member, outcast):
        join_room(room_id=room.pk, user=user)
    gql(
        owner,
        'mutation($r: Int!, $u: Int!) { setMemberRole(roomId: $r, userId: $u, role: "moderator") { ok } }',
        {"r": room.pk, "u": mod.pk},
    )
    ban_member(room_id=room.pk, user_id=outcast.pk, actor=mod)
    unban = "mutation($r: Int!, $u: Int!) { unbanMember(roomId: $r, userId: $u) { ok error role user { id } } }"
    assert gql(member, unban, {"r": room.pk, "u": outcast.pk})["data"]["unbanMember"]["error"] == "forbidden"
    assert gql(mod, unban, {"r": room.pk, "u": outcast.pk})["data"]["unbanMember"] == {
        "ok": True,
        "error": None,
        "role": None,
        "user": {"id": outcast.pk},
    }
    assert not Ban.objects.filter(room=room, user=outcast).exists()
    join_room(room_id=room.pk, user=outcast)  # may come back
    transfer = "mutation($r: Int!, $u: Int!) { transferOwnership(roomId: $r, userId: $u) { ok error role room { myRole owner { id } } } }"
    assert gql(mod, transfer, {"r": room.pk, "u": member.pk})["data"]["transferOwnership"]["error"] == "forbidden"
    done = gql(owner, transfer, {"r": room.pk, "u": member.pk})["data"]["transferOwnership"]
    assert done == {
        "ok": True,
        "error": None,
        "role": "owner",
        "room": {"myRole": "moderator", "owner": {"id": member.pk}},
    }
    assert (
        gql(owner, transfer, {"r": room.pk, "u": make_user().pk})["data"]["transferOwnership"]["error"] == "forbidden"
    )


def test_a_private_room_and_a_dm_are_invisible_to_non_members_in_every_graphql_query(make_user: Any) -> None:
    owner, partner, stranger = make_user(), make_user(), make_user()
    room = private_room(owner)
    send_message(room_id=room.pk, sender=owner, client_id="c1", body="Secret plans inside")
    dm = gql(owner, OPEN_DM, {"u": partner.pk})["data"]["openDm"]["room"]["id"]
    for room_id in (room.pk, dm):
        for query in (
            "query($r: Int!) { room(id: $r) { id title } }",
            "query($r: Int!) { leaveTime(roomId: $r) }",
            "query($r: Int!) { missedMessages(roomId: $r) { id body } }",
            "query($r: Int!) { roomInvites(roomId: $r) { id } }",
        ):
            result = gql(stranger, query, {"r": room_id})
            assert [e["extensions"]["code"] for e in result["errors"]] == ["not_found"], (query, result)
    listed = gql(stranger, "{ rooms(first: 100) { edges { node { id } } } myRooms { id } }")["data"]
    ids = {edge["node"]["id"] for edge in listed["rooms"]["edges"]} | {r["id"] for r in listed["myRooms"]}
    assert room.pk not in ids and dm not in ids
    found = gql(stranger, '{ searchMessages(q: "Secret") { count results { message { id } } } }')
    assert found["data"]["searchMessages"] == {"count": 0, "results": []}
    assert gql(owner, '{ searchMessages(q: "Secret") { count } }')["data"]["searchMessages"]["count"] == 1
    # Members see both, with their role.
    assert (
        gql(owner, "query($r: Int!) { room(id: $r) { myRole } }", {"r": room.pk})["data"]["room"]["myRole"] == "owner"
    )
    assert gql(partner, "query($r: Int!) { room(id: $r) { kind } }", {"r": dm})["data"]["room"]["kind"] == "dm"
