"""Changes over the chat socket in one process: edit, delete and react frames, what every member's
sockets receive, refusals, resume, and mention frames on the mentioned user's other sockets."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from accounts.testing import access_token_for
from messaging.services import delete_message, edit_message, set_reaction
from messaging.testing import InProcessChatClient
from rooms.services import create_room

pytestmark = pytest.mark.django_db(transaction=True)


def updates(client: InProcessChatClient) -> list[dict]:
    return client.of_type("message.updated")


def test_edit_delete_and_react_frames_reach_every_members_socket_as_message_updated_in_seq_order(
    ws_connect, room_with_members
):
    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        a = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        b = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(bob)))
        await a.send_message("frist")
        await b.wait_until(lambda c: len(c.messages()) == 1)
        message_id = b.messages()[0]["id"]
        await a.send_json({"type": "edit", "message_id": message_id, "body": "first"})
        await b.wait_until(lambda c: len(updates(c)) == 1)
        await b.send_json({"type": "react", "message_id": message_id, "emoji": "👍", "on": True})
        await b.wait_until(lambda c: len(updates(c)) == 2)
        await a.send_json({"type": "delete", "message_id": message_id})
        await a.wait_until(lambda c: len(updates(c)) == 3)
        await b.wait_until(lambda c: len(updates(c)) == 3)
        for client in (a, b):
            seqs = client.event_seqs()
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
            edit, react, delete = updates(client)
            assert edit["message"]["body"] == "first" and edit["message"]["edited_at"]
            assert react["message"]["reactions"] == [{"emoji": "👍", "count": 1, "users": [bob.pk]}]
            assert delete["message"]["body"] == "" and delete["message"]["deleted_at"]
            assert "me" not in react["message"]["reactions"][0]  # a frame is the same for every reader
        assert updates(a) == updates(b)
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_a_refused_change_gets_an_error_frame_naming_the_message_and_changes_nothing(ws_connect, room_with_members):
    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        a = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        b = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(bob)))
        await a.send_message("alice's words")
        await b.wait_until(lambda c: len(c.messages()) == 1)
        message_id = b.messages()[0]["id"]
        await b.send_json({"type": "edit", "message_id": message_id, "body": "bob's words"})
        await b.send_json({"type": "delete", "message_id": message_id})
        await b.send_json({"type": "react", "message_id": message_id, "emoji": "not one", "on": True})
        await b.send_json({"type": "react", "message_id": message_id, "emoji": "tada", "on": "yes"})
        await b.send_json({"type": "edit", "message_id": "7", "body": "x"})
        await b.wait_until(lambda c: len(c.of_type("error")) == 5)
        codes = [(e["code"], e.get("message_id")) for e in b.of_type("error")]
        assert codes == [
            ("forbidden", message_id),
            ("forbidden", message_id),
            ("validation_error", message_id),
            ("validation_error", message_id),
            ("not_found", None),
        ]
        await a.send_json({"type": "ping"})
        await a.wait_until(lambda c: c.of_type("pong"))
        assert updates(a) == [] and updates(b) == []
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_a_client_that_resumes_ends_in_the_state_of_a_client_that_stayed(ws_connect, room_with_members):
    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        stayed = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        away = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(bob)))
        for n in range(3):
            await stayed.send_message(f"before {n}")
        await away.wait_until(lambda c: len(c.messages()) == 3)
        left_at = away.event_seqs()[-1]
        ids = [m["id"] for m in away.messages()]
        await away.close()

        await sync_to_async(edit_message)(room_id=room.pk, message_id=ids[0], actor=alice, body="before 0, fixed")
        await sync_to_async(set_reaction)(room_id=room.pk, message_id=ids[1], actor=alice, emoji="tada", on=True)
        await sync_to_async(set_reaction)(room_id=room.pk, message_id=ids[1], actor=alice, emoji="👍", on=True)
        await sync_to_async(delete_message)(room_id=room.pk, message_id=ids[2], actor=alice)
        await stayed.send_message("while away")
        await stayed.wait_until(lambda c: len(updates(c)) == 4 and len(c.messages()) == 4)

        back = InProcessChatClient(
            await ws_connect(f"/ws/rooms/{room.pk}/?after_seq={left_at}", access_token_for(bob))
        )
        await back.wait_until(lambda c: c.of_type("synced"))
        seqs = back.event_seqs()
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] > left_at
        assert back.of_type("synced")[0]["last_seq"] == stayed.event_seqs()[-1]
        mine = away.folded()
        mine.update(back.folded())
        assert mine == stayed.folded()
        await stayed.close()
        await back.close()

    asyncio.run(scenario())


def test_a_mention_reaches_the_mentioned_users_sockets_in_other_rooms(ws_connect, room_with_members):
    room, (alice, bob) = room_with_members(2)
    elsewhere = create_room(owner=bob, title="bob's other room", max_personnel=5)

    async def scenario() -> None:
        a = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        b_elsewhere = InProcessChatClient(await ws_connect(f"/ws/rooms/{elsewhere.pk}/", access_token_for(bob)))
        await a.send_message(f"@{bob.username} look")
        await a.send_message("not for bob")
        await b_elsewhere.wait_until(lambda c: c.of_type("mention"))
        await asyncio.sleep(0.2)
        mentions = b_elsewhere.of_type("mention")
        assert len(mentions) == 1
        assert mentions[0]["room_id"] == room.pk and mentions[0]["message"]["body"] == f"@{bob.username} look"
        assert b_elsewhere.messages() == []  # the other room's messages themselves do not leak
        assert a.of_type("mention") == []
        await a.close()
        await b_elsewhere.close()

    asyncio.run(scenario())
