"""The user socket /ws/me/ in one process (Channels' WebsocketCommunicator): the rooms' activity on connect
and live, mentions, reads, joins and leaves, refusals. Across processes: test_user_socket_servers.py."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.db import connections

from accounts.testing import access_token_for
from messaging import services
from messaging.activity import Effect, effect_of
from realtime.testing import CommunicatorClient
from rooms.services import create_room, join_room, leave_room

pytestmark = pytest.mark.django_db(transaction=True)


def send(room: Any, user: Any, body: str, **extra: Any) -> dict[str, Any]:
    return services.send_message(room_id=room.pk, sender=user, client_id=str(uuid.uuid4()), body=body, **extra).message


async def in_thread(func: Any, *args: Any, **kwargs: Any) -> Any:
    """A service call from the test's event loop; the thread gives its database connection back (each
    asyncio.run has new executor threads, which would otherwise hold pool connections for good)."""

    def call() -> Any:
        try:
            return func(*args, **kwargs)
        finally:
            connections.close_all()

    return await asyncio.to_thread(call)


def activity(client: CommunicatorClient, room_id: int) -> dict[str, Any] | None:
    """The latest room.activity of a room, or None."""
    frames = [f for f in client.of_type("room.activity") if f["room_id"] == room_id]
    return frames[-1] if frames else None


def counts(client: CommunicatorClient, room_id: int) -> tuple[int, int] | None:
    latest = activity(client, room_id)
    return None if latest is None else (latest["unread"], latest["mentions"])


async def open_me(ws_connect: Any, user: Any) -> CommunicatorClient:
    return CommunicatorClient(await ws_connect("/ws/me/", access_token_for(user)))


def test_on_connect_each_room_of_the_user_gets_its_activity_with_unread_and_mentions(ws_connect, room_with_members):
    room, (alice, bob) = room_with_members(2)
    quiet = create_room(owner=bob, title="quiet", max_personnel=5)
    send(room, alice, "hello")
    send(room, alice, "hey @" + bob.username)
    send(room, bob, "my own message counts for nobody else")
    room.refresh_from_db()

    async def scenario() -> None:
        me = await open_me(ws_connect, bob)
        await me.wait_until(lambda c: len(c.of_type("room.activity")) == 2)
        first, second = me.of_type("room.activity")
        assert first == {
            "type": "room.activity", "room_id": room.pk, "last_seq": room.last_seq, "unread": 2, "mentions": 1,
            "member": True,
        }, "the most recently active room first"
        assert (second["room_id"], second["unread"], second["mentions"]) == (quiet.pk, 0, 0)
        await me.close()

    asyncio.run(scenario())


def test_new_messages_mentions_edits_deletions_and_reactions_move_the_counts_live(ws_connect, room_with_members):
    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        me = await open_me(ws_connect, bob)
        await me.wait_until(lambda c: counts(c, room.pk) == (0, 0))
        plain = await in_thread(send, room, alice, "plain")
        await me.wait_until(lambda c: counts(c, room.pk) == (1, 0))
        assert activity(me, room.pk)["last_seq"] == plain["seq"]

        mentioning = await in_thread(send, room, alice, f"look @{bob.username}")
        await me.wait_until(lambda c: counts(c, room.pk) == (2, 1))
        await me.wait_until(lambda c: c.of_type("mention"))
        mention = me.of_type("mention")[0]
        assert mention["room_id"] == room.pk and mention["message"]["id"] == mentioning["id"]

        await in_thread(
            services.set_reaction, room_id=room.pk, message_id=plain["id"], actor=alice, emoji="👍", on=True
        )
        await in_thread(
            services.edit_message, room_id=room.pk, message_id=plain["id"], actor=alice, body=f"@{bob.username} too"
        )
        await me.wait_until(lambda c: counts(c, room.pk) == (2, 2))
        await in_thread(services.edit_message, room_id=room.pk, message_id=mentioning["id"], actor=alice, body="nobody")
        await me.wait_until(lambda c: counts(c, room.pk) == (2, 1))
        await in_thread(services.delete_message, room_id=room.pk, message_id=plain["id"], actor=alice)
        await me.wait_until(lambda c: counts(c, room.pk) == (1, 0))
        await in_thread(room.refresh_from_db)
        await me.wait_until(lambda c: activity(c, room.pk)["last_seq"] == room.last_seq)
        await me.close()

    asyncio.run(scenario())


def test_a_reaction_moves_last_seq_and_leaves_the_counts_alone(ws_connect, room_with_members):
    room, (alice, bob) = room_with_members(2)
    message = send(room, alice, f"hi @{bob.username}")

    async def scenario() -> None:
        me = await open_me(ws_connect, bob)
        await me.wait_until(lambda c: counts(c, room.pk) == (1, 1))
        before = len(me.of_type("room.activity"))
        await in_thread(services.set_reaction, room_id=room.pk, message_id=message["id"], actor=alice, emoji="🎉", on=True)
        await me.wait_until(lambda c: len(c.of_type("room.activity")) == before + 1)
        latest = activity(me, room.pk)
        assert (latest["unread"], latest["mentions"]) == (1, 1)
        assert latest["last_seq"] == message["seq"] + 1
        await me.close()

    asyncio.run(scenario())


def test_reading_on_any_tab_clears_the_counts_and_a_partial_read_recounts(ws_connect, room_with_members):
    room, (alice, bob) = room_with_members(2)
    first = send(room, alice, f"one @{bob.username}")
    send(room, alice, "two")
    last = send(room, alice, f"three @{bob.username}")

    async def scenario() -> None:
        me = await open_me(ws_connect, bob)
        await me.wait_until(lambda c: counts(c, room.pk) == (3, 2))
        position = await in_thread(services.mark_read, room_id=room.pk, user=bob, seq=first["seq"])
        assert (position.unread, position.mentions) == (2, 1)
        await me.wait_until(lambda c: counts(c, room.pk) == (2, 1))
        await in_thread(services.mark_read, room_id=room.pk, user=bob, seq=last["seq"])
        await me.wait_until(lambda c: counts(c, room.pk) == (0, 0))
        await me.close()

    asyncio.run(scenario())


def test_joining_and_leaving_a_room_while_connected_starts_and_ends_its_activity(ws_connect, room_with_members, make_user):
    room, (alice, bob) = room_with_members(2)
    other = create_room(owner=alice, title="other", max_personnel=5)

    async def scenario() -> None:
        me = await open_me(ws_connect, bob)
        await me.wait_until(lambda c: counts(c, room.pk) == (0, 0))
        assert activity(me, other.pk) is None
        await in_thread(join_room, room_id=other.pk, user=bob)
        await me.wait_until(lambda c: counts(c, other.pk) == (0, 0))
        await in_thread(send, other, alice, f"welcome @{bob.username}")
        await me.wait_until(lambda c: counts(c, other.pk) == (1, 1))
        await in_thread(leave_room, room_id=other.pk, user=bob)
        await me.wait_until(lambda c: activity(c, other.pk)["member"] is False)
        assert counts(me, other.pk) == (0, 0)
        gone = len([f for f in me.of_type("room.activity") if f["room_id"] == other.pk])
        await in_thread(send, other, alice, "after bob left")
        await in_thread(send, room, alice, "marker")  # a later frame proves nothing came for the left room
        await me.wait_until(lambda c: counts(c, room.pk) == (1, 0))
        assert len([f for f in me.of_type("room.activity") if f["room_id"] == other.pk]) == gone
        await me.close()

    asyncio.run(scenario())


def test_a_deleted_room_ends_its_activity(ws_connect, room_with_members):
    from rooms.services import delete_room

    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        me = await open_me(ws_connect, bob)
        await me.wait_until(lambda c: counts(c, room.pk) == (0, 0))
        await in_thread(delete_room, room_id=room.pk, actor=alice)
        await me.wait_until(lambda c: activity(c, room.pk)["member"] is False)
        assert me.close_code is None, "the user socket stays open"
        await me.close()

    asyncio.run(scenario())


def test_a_user_in_more_rooms_than_the_limit_gets_the_most_recently_active(ws_connect, make_user, settings):
    settings.WS_ME_MAX_ROOMS = 2
    bob = make_user()
    rooms = [create_room(owner=bob, title=f"r{i}", max_personnel=5) for i in range(3)]
    send(rooms[0], bob, "the oldest room is now the most active")

    async def scenario() -> None:
        me = await open_me(ws_connect, bob)
        await me.wait_until(lambda c: len(c.of_type("room.activity")) == 2)
        await asyncio.sleep(0.2)
        assert [f["room_id"] for f in me.of_type("room.activity")] == [rooms[0].pk, rooms[2].pk]
        await me.close()

    asyncio.run(scenario())


def test_the_user_socket_refuses_like_the_chat_socket_and_answers_pings(ws_connect, make_user, settings):
    from chattalk_project.asgi import application

    settings.WS_MAX_SOCKETS_PER_USER = 1
    bob = make_user()

    async def scenario() -> None:
        anonymous = CommunicatorClient(await ws_connect("/ws/me/"))
        assert await anonymous.wait_closed() == 4401
        bad = CommunicatorClient(await ws_connect("/ws/me/", "not-a-token"))
        assert await bad.wait_closed() == 4401
        me = await open_me(ws_connect, bob)
        await me.send_json({"type": "ping"})
        await me.wait_until(lambda c: c.of_type("pong"))
        await me.send_json({"type": "send", "body": "x"})
        await me.wait_until(lambda c: c.of_type("error"))
        assert me.of_type("error")[0]["code"] == "unknown_type" and me.close_code is None
        second = await open_me(ws_connect, bob)
        assert await second.wait_closed() == 4429
        foreign = WebsocketCommunicator(
            application,
            f"/ws/me/?access_token={access_token_for(bob)}",
            headers=[(b"origin", b"https://evil.example")],
        )
        connected, _ = await foreign.connect(timeout=10)
        assert not connected, "a foreign Origin is refused before accept"
        await me.close()

    asyncio.run(scenario())


def test_an_idle_user_socket_is_closed_4408(ws_connect, make_user, settings):
    settings.WS_IDLE_SECONDS = 2
    bob = make_user()

    async def scenario() -> None:
        me = await open_me(ws_connect, bob)
        assert await me.wait_closed(timeout=10) == 4408

    asyncio.run(scenario())


def test_the_effect_of_a_frame_is_counted_from_the_frame_or_asks_for_a_recount() -> None:
    """The pure decision: a new message counts; a change of an unread message that may move a count asks
    the database; a reaction or a change of a read message changes nothing."""
    bob = 7
    message = {"id": 1, "seq": 10, "kind": "TALK", "sender": {"id": 3}, "deleted_at": None, "mentions": [bob]}
    assert effect_of({"type": "message", "message": message}, bob, 5, None) == Effect(unread=1, mentions=1)
    assert effect_of({"type": "message", "message": {**message, "sender": {"id": bob}}}, bob, 5, None) == Effect()
    assert effect_of({"type": "message", "message": {**message, "deleted_at": "x"}}, bob, 5, None) == Effect()
    updated = {"type": "message.updated", "seq": 12, "message": message}
    assert effect_of(updated, bob, 5, frozenset({bob})) == Effect(), "a reaction: mentions as before"
    assert effect_of(updated, bob, 5, frozenset()) == Effect(recount=True), "an edit that mentions bob now"
    assert effect_of(updated, bob, 5, None) == Effect(recount=True), "not seen here: ask"
    assert effect_of(updated, bob, 10, None) == Effect(), "already read"
    deleted = {"type": "message.updated", "seq": 12, "message": {**message, "deleted_at": "x", "mentions": []}}
    assert effect_of(deleted, bob, 5, frozenset({bob})) == Effect(recount=True)
    leave = {"type": "message", "message": {**message, "kind": "LEAVE", "sender": {"id": bob}}}
    assert effect_of(leave, bob, 5, None) == Effect(recount=True)
    assert effect_of({"type": "member.kicked", "seq": 3, "user": {"id": bob}}, bob, 5, None) == Effect(recount=True)


def test_new_messages_and_reactions_in_a_room_of_12_cost_no_query_and_a_deletion_one_per_room(
    ws_connect, room_with_members, monkeypatch
):
    """The counts move from the frames: no database read per member per message. A deletion of an unread
    message is re-counted for every local member in one statement."""
    from messaging import activity as activity_module

    room, users = room_with_members(12)
    alice, members = users[0], users[1:]
    recounts: list[list[int]] = []
    real = activity_module.counts_in_room_async

    async def counting(room_id: int, user_ids: list[int]) -> Any:
        recounts.append(user_ids)
        return await real(room_id, user_ids)

    monkeypatch.setattr(activity_module, "counts_in_room_async", counting)

    async def scenario() -> None:
        sockets = [await open_me(ws_connect, user) for user in members]
        for me in sockets:
            await me.wait_until(lambda c: counts(c, room.pk) == (0, 0))
        sent = [await in_thread(send, room, alice, f"message {i}") for i in range(5)]
        await in_thread(services.set_reaction, room_id=room.pk, message_id=sent[0]["id"], actor=alice, emoji="👍", on=True)
        for me in sockets:
            await me.wait_until(lambda c: counts(c, room.pk) == (5, 0))
        assert recounts == [], "new messages and a reaction of a message seen here need no query"
        await in_thread(services.delete_message, room_id=room.pk, message_id=sent[1]["id"], actor=alice)
        for me in sockets:
            await me.wait_until(lambda c: counts(c, room.pk) == (4, 0))
        assert len(recounts) <= 2 and sorted(u for batch in recounts for u in batch) == sorted(u.pk for u in members)
        for me in sockets:
            await me.close()

    asyncio.run(scenario())
