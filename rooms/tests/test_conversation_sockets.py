"""Sockets and conversations: a private room's sockets refuse non-members (4404), a kick or ban closes the
member's sockets (4403) on every process, moderation events arrive in seq order, and a member of a room
with history "since_join" never sees what came before their join, live or replayed (issue 18)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from accounts.testing import access_token_for
from messaging.services import edit_message, send_message
from messaging.testing import ChatClient, InProcessChatClient
from realtime.testing import CommunicatorClient
from rooms.services import accept_invite, create_invite, create_room, join_room, kick_member, set_role

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_private_rooms_chat_and_presence_sockets_close_4404_for_a_non_member(ws_connect: Any, make_user: Any) -> None:
    owner, stranger = make_user(), make_user()
    room = create_room(owner=owner, title="Hidden", max_personnel=5, visibility="private")
    dm_partner = make_user()
    from rooms.services import open_dm

    dm = open_dm(user=owner, user_id=dm_partner.pk).room

    async def scenario() -> None:
        for room_id in (room.pk, dm.pk):
            for path in (f"/ws/rooms/{room_id}/", f"/ws/rooms/{room_id}/presence/"):
                client = CommunicatorClient(await ws_connect(path, access_token_for(stranger)))
                assert await client.wait_closed() == 4404, path
                await client.close()
        member = CommunicatorClient(await ws_connect(f"/ws/rooms/{dm.pk}/presence/", access_token_for(dm_partner)))
        await member.wait_until(lambda c: c.of_type("presence.snapshot"))
        await member.close()

    asyncio.run(scenario())


def test_a_kick_closes_the_members_socket_with_4403_and_every_member_sees_the_events_in_seq_order(
    ws_connect: Any, make_user: Any
) -> None:
    owner, mod, member = make_user(), make_user(), make_user()
    room = create_room(owner=owner, title="Town", max_personnel=5)
    join_room(room_id=room.pk, user=mod)
    join_room(room_id=room.pk, user=member)

    async def scenario() -> None:
        watcher = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(owner)))
        presence = CommunicatorClient(await ws_connect(f"/ws/rooms/{room.pk}/presence/", access_token_for(owner)))
        victim = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(member)))
        victim_presence = CommunicatorClient(
            await ws_connect(f"/ws/rooms/{room.pk}/presence/", access_token_for(member))
        )
        await presence.wait_until(lambda c: c.of_type("presence.snapshot"))
        await asyncio.to_thread(set_role, room_id=room.pk, user_id=mod.pk, actor=owner, role="moderator")
        await asyncio.to_thread(kick_member, room_id=room.pk, user_id=member.pk, actor=mod)
        assert await victim.wait_closed(timeout=5) == 4403
        assert await victim_presence.wait_closed(timeout=5) == 4403
        # Presence shows the kicked user gone (no longer a member, no connection).
        await presence.wait_until(
            lambda c: any(
                f["participant"]["user"]["id"] == member.pk and not f["participant"]["member"]
                for f in c.of_type("presence.changed")
            )
        )
        await presence.close()
        await watcher.wait_until(lambda c: c.of_type("member.kicked"))
        events = [f for f in watcher.frames if f["type"] in ("role.changed", "member.kicked", "message")]
        assert [f["type"] for f in events] == ["role.changed", "message", "member.kicked"]  # LEAVE, then the kick
        role, leave, kicked = events
        assert role["user"]["id"] == mod.pk and role["by"]["id"] == owner.pk and role["role"] == "moderator"
        assert leave["message"]["kind"] == "LEAVE" and leave["message"]["sender"]["id"] == member.pk
        assert kicked["user"]["id"] == member.pk and kicked["by"]["id"] == mod.pk and "role" not in kicked
        seqs = [f.get("seq") or f["message"]["seq"] for f in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        # A client that resumes from before the role change ends in the same state.
        resumed = InProcessChatClient(
            await ws_connect(f"/ws/rooms/{room.pk}/?after_seq={seqs[0] - 1}", access_token_for(owner))
        )
        await resumed.wait_until(lambda c: c.of_type("synced"))
        replayed = [f for f in resumed.frames if f["type"] in ("role.changed", "member.kicked", "message")]
        assert replayed == events
        for client in (watcher, resumed):
            await client.close()

    asyncio.run(scenario())


def test_a_since_join_member_sees_nothing_from_before_their_join_in_history_resume_or_live_changes(
    ws_connect: Any, make_user: Any, client_for: Any
) -> None:
    owner, late = make_user(), make_user()
    room = create_room(owner=owner, title="Club", max_personnel=5, visibility="private")
    assert room.history_visibility == "since_join"
    old = send_message(room_id=room.pk, sender=owner, client_id="old", body="before you came").message
    accept_invite(token=create_invite(room_id=room.pk, actor=owner).token, user=late)
    new = send_message(room_id=room.pk, sender=owner, client_id="new", body="welcome").message
    history = client_for(late).get(f"/api/rooms/{room.pk}/messages").json()["results"]
    assert [(m["kind"], m["body"]) for m in history] == [("ENTER", ""), ("TALK", "welcome")]
    assert "before you came" not in str(client_for(late).get(f"/api/rooms/{room.pk}/messages?after_seq=0").json())
    owner_history = client_for(owner).get(f"/api/rooms/{room.pk}/messages").json()["results"]
    assert old["id"] in [m["id"] for m in owner_history]
    # Reacting to (or replying to) the hidden message is as if it did not exist.
    react = client_for(late).put(f"/api/rooms/{room.pk}/messages/{old['id']}/reactions/👍")
    assert react.status_code == 404
    reply = client_for(late).post(
        f"/api/rooms/{room.pk}/messages", {"client_id": "r", "body": "re", "reply_to": old["id"]}, format="json"
    )
    assert reply.status_code == 400 and reply.json()["code"] == "invalid_reply"

    async def scenario() -> None:
        late_socket = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/?after_seq=0", access_token_for(late)))
        owner_socket = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(owner)))
        await late_socket.wait_until(lambda c: c.of_type("synced"))
        assert [m["id"] for m in late_socket.messages(None) if m["kind"] == "TALK"] == [new["id"]]
        await asyncio.to_thread(edit_message, room_id=room.pk, message_id=old["id"], actor=owner, body="edited old")
        await asyncio.to_thread(edit_message, room_id=room.pk, message_id=new["id"], actor=owner, body="edited new")
        await owner_socket.wait_until(lambda c: len(c.of_type("message.updated")) == 2)
        await late_socket.wait_until(lambda c: c.of_type("message.updated"))
        await asyncio.sleep(0.2)
        updated = late_socket.of_type("message.updated")
        assert [u["message"]["id"] for u in updated] == [new["id"]], "the old message's change never reaches them"
        # A resume from 0 shows the same: the new message in its current state, nothing older.
        late_socket.frames.clear()
        await asyncio.sleep(1.0)  # one resume per second
        await late_socket.send_json({"type": "resume", "after_seq": 0})
        await late_socket.wait_until(lambda c: c.of_type("synced"))
        assert "before you came" not in str(late_socket.frames) and "edited old" not in str(late_socket.frames)
        assert any(f.get("message", {}).get("body") == "edited new" for f in late_socket.frames)
        for client in (late_socket, owner_socket):
            await client.close()

    asyncio.run(scenario())
    missed = client_for(late).post(
        "/graphql", {"query": f"{{ missedMessages(roomId: {room.pk}) {{ id body }} }}"}, format="json"
    ).json()
    assert "before you came" not in str(missed) and "edited old" not in str(missed)


@pytest.mark.redis
@pytest.mark.postgres
def test_a_kick_on_one_process_closes_the_members_socket_on_another_within_5_seconds(
    server_factory: Any, make_user: Any
) -> None:
    servers = [server_factory(name=f"w{i}") for i in range(2)]
    owner, member = make_user(), make_user()
    room = create_room(owner=owner, title="Town", max_personnel=5)
    join_room(room_id=room.pk, user=member)

    async def scenario() -> None:
        victim = await ChatClient(servers[1].ws_url, room.pk, access_token_for(member)).connect()
        watcher = await ChatClient(servers[1].ws_url, room.pk, access_token_for(owner)).connect()
        await asyncio.sleep(0.3)
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=servers[0].http_url, timeout=10) as client:
            response = await client.post(
                f"/api/rooms/{room.pk}/members/{member.pk}/kick",
                headers={"Authorization": f"Bearer {access_token_for(owner)}"},
            )
        assert response.status_code == 200, response.text
        assert await victim.wait_closed(timeout=5) == 4403
        assert time.monotonic() - started < 5
        await watcher.wait_until(lambda c: c.of_type("member.kicked"), timeout=5)
        await watcher.close()
        await victim.close()

    asyncio.run(scenario())


def test_a_reply_never_quotes_to_a_since_join_member_what_came_before_their_join(
    ws_connect: Any, make_user: Any, client_for: Any
) -> None:
    owner, late = make_user(), make_user()
    room = create_room(owner=owner, title="Club", max_personnel=5, visibility="private")
    old = send_message(room_id=room.pk, sender=owner, client_id="old", body="the secret recipe").message
    accept_invite(token=create_invite(room_id=room.pk, actor=owner).token, user=late)

    async def scenario() -> None:
        late_socket = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(late)))
        await asyncio.to_thread(
            send_message, room_id=room.pk, sender=owner, client_id="re", body="as I said", reply_to=old["id"]
        )
        await late_socket.wait_until(lambda c: c.messages())
        quoted = late_socket.messages()[0]["reply_to"]
        assert quoted["id"] == old["id"] and quoted["excerpt"] == "" and quoted["sender"] is None
        await asyncio.to_thread(edit_message, room_id=room.pk, message_id=late_socket.messages()[0]["id"], actor=owner, body="as I said!")
        await late_socket.wait_until(lambda c: c.of_type("message.updated"))
        assert "secret" not in str(late_socket.frames)
        await late_socket.close()

    asyncio.run(scenario())
    late_history = client_for(late).get(f"/api/rooms/{room.pk}/messages").json()["results"]
    assert "secret" not in str(late_history)
    owner_history = client_for(owner).get(f"/api/rooms/{room.pk}/messages").json()["results"]
    assert owner_history[-1]["reply_to"]["excerpt"] == "the secret recipe"


def test_a_send_into_a_dm_whose_other_user_blocked_the_sender_is_refused_with_a_blocked_error_frame_and_not_stored(
    ws_connect: Any, make_user: Any
) -> None:
    from messaging.models import Message
    from rooms.services import block_user, open_dm

    alice, bob = make_user(), make_user()
    dm = open_dm(user=alice, user_id=bob.pk).room

    async def scenario() -> None:
        sender = InProcessChatClient(await ws_connect(f"/ws/rooms/{dm.pk}/", access_token_for(alice)))
        await sender.send_message("before the block", client_id="before")
        await sender.wait_until(lambda c: c.of_type("ack"))
        await asyncio.to_thread(block_user, user=bob, user_id=alice.pk)
        await sender.send_message("after the block", client_id="after")
        await sender.wait_until(lambda c: c.of_type("error"))
        [error] = sender.of_type("error")
        # The same refusal as the REST send's 403: the code names the block, the frame names the send.
        assert error["code"] == "blocked" and error["client_id"] == "after" and error["detail"]
        assert [ack["client_id"] for ack in sender.of_type("ack")] == ["before"]
        # The socket stays open: a refused send is not a protocol error.
        await sender.send_json({"type": "ping"})
        await sender.wait_until(lambda c: c.of_type("pong"))
        await sender.close()

    asyncio.run(scenario())
    assert list(Message.objects.filter(room_id=dm.pk, kind="TALK").values_list("body", flat=True)) == [
        "before the block"
    ]
