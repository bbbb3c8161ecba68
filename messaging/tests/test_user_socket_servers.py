"""The user socket across real server processes sharing Redis: what happens on one process reaches the
user's sockets on another."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.db import connections

from accounts.testing import access_token_for
from messaging.testing import ChatClient
from realtime.testing import SocketClient, socket_url
from rooms.services import create_room, join_room

pytestmark = pytest.mark.django_db(transaction=True)


def join_and_close(room_id: int, user: Any) -> None:
    try:
        join_room(room_id=room_id, user=user)
    finally:
        connections.close_all()  # the thread's pool connection goes back


def counts(client: SocketClient, room_id: int) -> tuple[int, int] | None:
    frames = [f for f in client.of_type("room.activity") if f["room_id"] == room_id]
    return (frames[-1]["unread"], frames[-1]["mentions"]) if frames else None


@pytest.mark.redis
@pytest.mark.postgres
def test_a_message_sent_on_one_process_updates_the_user_socket_and_mentions_reach_a_chat_socket_in_another_room(
    server_factory: Any, room_with_members: Any
) -> None:
    a, b = server_factory(name="me-a"), server_factory(name="me-b")
    room, (alice, bob) = room_with_members(2)
    elsewhere = create_room(owner=bob, title="elsewhere", max_personnel=5)
    joined_later = create_room(owner=alice, title="later", max_personnel=5)

    async def scenario() -> None:
        me = await SocketClient(socket_url(b.ws_url, "/ws/me/", access_token=access_token_for(bob))).connect()
        bob_elsewhere = await ChatClient(b.ws_url, elsewhere.pk, access_token_for(bob)).connect()
        alice_chat = await ChatClient(a.ws_url, room.pk, access_token_for(alice)).connect()
        await me.wait_until(lambda c: counts(c, room.pk) == (0, 0) and counts(c, elsewhere.pk) == (0, 0))

        await alice_chat.send_message("hello from process A")
        await me.wait_until(lambda c: counts(c, room.pk) == (1, 0))

        await alice_chat.send_message(f"@{bob.username} are you there?")
        await me.wait_until(lambda c: counts(c, room.pk) == (2, 1))
        await bob_elsewhere.wait_until(lambda c: c.of_type("mention"))
        mention = bob_elsewhere.of_type("mention")[0]
        assert mention["room_id"] == room.pk and mention["message"]["body"].endswith("are you there?")
        await me.wait_until(lambda c: c.of_type("mention"))

        # Bob reads on process A (a chat socket of his there): the user socket on B hears it.
        bob_on_a = await ChatClient(a.ws_url, room.pk, access_token_for(bob)).connect()
        await bob_on_a.send_json({"type": "read", "seq": mention["message"]["seq"]})
        await me.wait_until(lambda c: counts(c, room.pk) == (0, 0))

        # A join committed by another process shows up, and so do its messages.
        await asyncio.to_thread(join_and_close, joined_later.pk, bob)
        await me.wait_until(lambda c: counts(c, joined_later.pk) == (0, 0))
        later_chat = await ChatClient(a.ws_url, joined_later.pk, access_token_for(alice)).connect()
        await later_chat.send_message("welcome")
        await me.wait_until(lambda c: counts(c, joined_later.pk) == (1, 0))

        for client in (me, bob_elsewhere, alice_chat, bob_on_a, later_chat):
            await client.close()

    asyncio.run(scenario())
