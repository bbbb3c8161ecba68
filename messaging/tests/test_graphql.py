"""GraphQL of messages: the Message fields of the lifecycle (edits, deletions, replies, reactions, mentions),
Room `mentions`, and the message mutations with their refusals as data."""

from __future__ import annotations

from typing import Any

import pytest

from messaging import services
from messaging.models import Message
from rooms.tests.conftest import bearer_client

pytestmark = pytest.mark.django_db

MESSAGE_FIELDS = """id seq clientId kind body createdAt editedAt deletedAt sender { id username }
  replyTo { id seq sender { id } excerpt deleted } reactions { emoji count users me } mentions
  attachments { id name }"""
SEND = f"""mutation($room: Int!, $body: String!, $replyTo: Int, $clientId: String) {{
  sendMessage(roomId: $room, body: $body, replyTo: $replyTo, clientId: $clientId) {{
    ok error message {{ {MESSAGE_FIELDS} }} }} }}"""
EDIT = f"""mutation($room: Int!, $id: Int!, $body: String!) {{
  editMessage(roomId: $room, messageId: $id, body: $body) {{ ok error message {{ {MESSAGE_FIELDS} }} }} }}"""
DELETE = f"""mutation($room: Int!, $id: Int!) {{
  deleteMessage(roomId: $room, messageId: $id) {{ ok error message {{ {MESSAGE_FIELDS} }} }} }}"""
ADD = f"""mutation($room: Int!, $id: Int!, $emoji: String!) {{
  addReaction(roomId: $room, messageId: $id, emoji: $emoji) {{ ok error message {{ {MESSAGE_FIELDS} }} }} }}"""
REMOVE = f"""mutation($room: Int!, $id: Int!, $emoji: String!) {{
  removeReaction(roomId: $room, messageId: $id, emoji: $emoji) {{ ok error message {{ {MESSAGE_FIELDS} }} }} }}"""
MISSED = f"query($room: Int!) {{ missedMessages(roomId: $room) {{ {MESSAGE_FIELDS} }} }}"


def gql(user: Any, query: str, **variables: Any) -> dict[str, Any]:
    response = bearer_client(user).post("/graphql", {"query": query, "variables": variables}, format="json")
    assert response.status_code in (200, 400), response.content
    return response.json()


def mutate(user: Any, query: str, **variables: Any) -> dict[str, Any]:
    data = gql(user, query, **variables)["data"]
    return next(iter(data.values()))


def test_send_with_a_reply_edit_react_and_delete_through_graphql_show_the_message_s_current_state(
    room_with_members: Any,
) -> None:
    room, (alice, bob) = room_with_members(2)
    original = mutate(alice, SEND, room=room.pk, body=f"hello @{bob.username}", clientId="gql-1")
    assert original["ok"] is True and original["error"] is None
    first = original["message"]
    assert first["mentions"] == [bob.pk] and first["clientId"] == "gql-1"
    assert first["editedAt"] is None and first["deletedAt"] is None and first["attachments"] == []
    assert mutate(alice, SEND, room=room.pk, body="again", clientId="gql-1")["message"]["id"] == first["id"]

    reply = mutate(bob, SEND, room=room.pk, body="hi back", replyTo=first["id"])["message"]
    assert reply["replyTo"] == {
        "id": first["id"], "seq": first["seq"], "sender": {"id": alice.pk}, "excerpt": f"hello @{bob.username}",
        "deleted": False,
    }

    edited = mutate(alice, EDIT, room=room.pk, id=first["id"], body="hello all")
    assert edited["ok"] and edited["message"]["body"] == "hello all" and edited["message"]["editedAt"]
    assert edited["message"]["mentions"] == []

    reacted = mutate(bob, ADD, room=room.pk, id=first["id"], emoji="👍")["message"]
    assert reacted["reactions"] == [{"emoji": "👍", "count": 1, "users": [bob.pk], "me": True}]
    seen_by_alice = gql(alice, MISSED, room=room.pk)["data"]["missedMessages"]
    assert [r["me"] for m in seen_by_alice if m["id"] == first["id"] for r in m["reactions"]] == [False]
    assert mutate(bob, REMOVE, room=room.pk, id=first["id"], emoji="👍")["message"]["reactions"] == []

    deleted = mutate(alice, DELETE, room=room.pk, id=first["id"])
    assert deleted["ok"] and deleted["message"]["body"] == "" and deleted["message"]["deletedAt"]
    replies = gql(bob, MISSED, room=room.pk)["data"]["missedMessages"]
    quoted = next(m for m in replies if m["id"] == reply["id"])["replyTo"]
    assert quoted["deleted"] is True and quoted["excerpt"] == ""


def test_refusals_are_data_forbidden_not_found_message_deleted_and_invalid_reply(room_with_members: Any) -> None:
    room, (alice, bob) = room_with_members(2)
    message = services.send_message(room_id=room.pk, sender=alice, client_id="r1", body="mine").message

    assert mutate(bob, EDIT, room=room.pk, id=message["id"], body="not yours") == {
        "ok": False, "error": "forbidden", "message": None,
    }
    assert mutate(bob, DELETE, room=room.pk, id=message["id"])["error"] == "forbidden"
    assert mutate(alice, EDIT, room=room.pk, id=987654, body="x")["error"] == "not_found"
    assert mutate(alice, SEND, room=room.pk, body="x", replyTo=987654)["error"] == "invalid_reply"
    assert mutate(alice, SEND, room=room.pk, body="   ")["error"] == "body_empty"
    mutate(alice, DELETE, room=room.pk, id=message["id"])
    assert mutate(alice, EDIT, room=room.pk, id=message["id"], body="back")["error"] == "message_deleted"
    assert mutate(bob, ADD, room=room.pk, id=message["id"], emoji="👍")["error"] == "message_deleted"
    assert mutate(None, SEND, room=room.pk, body="anon")["error"] == "not_authenticated"


def test_a_non_member_can_neither_see_nor_change_anything(room_with_members: Any, make_user: Any) -> None:
    room, (alice, _bob) = room_with_members(2)
    outsider = make_user()
    message = services.send_message(room_id=room.pk, sender=alice, client_id="n1", body="members only").message
    before = Message.objects.values_list("id", "body", "reactions", "deleted_at").order_by("id")
    snapshot = list(before)

    for query, variables in (
        (SEND, {"body": "let me in"}),
        (EDIT, {"id": message["id"], "body": "changed"}),
        (DELETE, {"id": message["id"]}),
        (ADD, {"id": message["id"], "emoji": "👍"}),
        (REMOVE, {"id": message["id"], "emoji": "👍"}),
    ):
        answer = mutate(outsider, query, room=room.pk, **variables)
        assert answer == {"ok": False, "error": "not_member", "message": None}, query
    assert list(before) == snapshot, "nothing changed"
    result = gql(outsider, MISSED, room=room.pk)
    assert result["data"]["missedMessages"] is None
    assert [e["extensions"]["code"] for e in result["errors"]] == ["not_member"]
    room_query = "query($id: Int!) { room(id: $id) { unread mentions } }"
    assert gql(outsider, room_query, id=room.pk)["data"]["room"] == {"unread": None, "mentions": None}


def test_rooms_show_the_caller_s_unread_mentions(room_with_members: Any) -> None:
    room, (alice, bob) = room_with_members(2)
    services.send_message(room_id=room.pk, sender=alice, client_id="m1", body=f"@{bob.username} one")
    services.send_message(room_id=room.pk, sender=alice, client_id="m2", body="two")
    services.send_message(room_id=room.pk, sender=alice, client_id="m3", body=f"three @{bob.username}")
    mine = gql(bob, "{ myRooms { id unread mentions } }")["data"]["myRooms"]
    assert mine == [{"id": room.pk, "unread": 3, "mentions": 2}]
    one = gql(bob, "query($id: Int!) { room(id: $id) { unread mentions } }", id=room.pk)["data"]["room"]
    assert one == {"unread": 3, "mentions": 2}
    assert gql(alice, "{ myRooms { mentions } }")["data"]["myRooms"] == [{"mentions": 0}]


def test_message_mutations_share_the_per_user_write_limit(room_with_members: Any, settings: Any) -> None:
    settings.SEND_MESSAGES_BURST = 2
    settings.SEND_MESSAGES_PER_SECOND = 1
    room, (alice, _bob) = room_with_members(2)
    message = services.send_message(room_id=room.pk, sender=alice, client_id="l1", body="x").message
    answers = [mutate(alice, ADD, room=room.pk, id=message["id"], emoji=e)["error"] for e in ("👍", "🎉", "😀", "🙂")]
    assert "rate_limited" in answers and answers[0] is None


def test_the_new_message_fields_are_charged_by_the_cost_limit(room_with_members: Any, settings: Any) -> None:
    """200 messages x 20 reactions x 4 fields is 16,200: over a limit of 10,000, refused before it runs;
    without the reactions it is cheap."""
    settings.GRAPHQL_MAX_COST = 10_000
    room, (alice, _bob) = room_with_members(2)
    query = "query($room: Int!) { missedMessages(roomId: $room, limit: 200) { reactions { emoji count users me } } }"
    result = gql(alice, query, room=room.pk)
    assert [e["extensions"]["code"] for e in result["errors"]] == ["query_too_expensive"]
    cheap = "query($room: Int!) { missedMessages(roomId: $room, limit: 200) { id body mentions } }"
    assert "errors" not in gql(alice, cheap, room=room.pk)
