"""The presence socket and the chat sockets' presence, through real server processes."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import pytest

from accounts.testing import access_token_for
from messaging.testing import ChatClient
from presence.testing import PresenceClient

from .factories import make_room, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_presence_store")]

FAST_PRESENCE = {"PRESENCE_HEARTBEAT_SECONDS": "1", "PRESENCE_TIMEOUT_SECONDS": "4"}


def get_json(url: str, token: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for_member(
    server: Any, room_id: int, token: str, user_id: int, timeout: float = 10.0, **expected: Any
) -> dict:
    deadline = time.monotonic() + timeout
    row: dict | None = None
    while time.monotonic() < deadline:
        status, body = get_json(f"{server.http_url}/api/rooms/{room_id}/members", token)
        assert status == 200, body
        row = next((r for r in body["results"] if r["user"]["id"] == user_id), None)
        if row is not None and all(row.get(k) == v for k, v in expected.items()):
            return row
        time.sleep(0.1)
    raise AssertionError(f"member {user_id} never had {expected}; last {row}")


def test_presence_socket_refuses_no_token_non_members_and_unknown_rooms(server_factory):
    alice, mallory = make_user("alice"), make_user("mallory")
    room = make_room(alice)
    server = server_factory()

    async def close_code(room_id: int, token: str | None) -> int | None:
        client = await PresenceClient(server.ws_url, room_id, token).connect()
        code = await client.wait_closed()
        assert client.frames == []  # nothing about the room leaks before the close
        return code

    async def scenario() -> None:
        assert await close_code(room.pk, None) == 4401
        assert await close_code(room.pk, access_token_for(mallory)) == 4403
        assert await close_code(room.pk + 1000, access_token_for(alice)) == 4404

    asyncio.run(scenario())


def test_two_tabs_count_two_closing_one_keeps_connected_closing_both_sets_left_at(server_factory):
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room(alice, bob)
    server = server_factory()
    alice_token, bob_token = access_token_for(alice), access_token_for(bob)

    async def scenario() -> None:
        watcher = await PresenceClient(server.ws_url, room.pk, bob_token).connect()
        await watcher.wait_until(lambda c: c.of_type("presence.snapshot"))
        assert watcher.of_type("presence.snapshot")[0]["degraded"] is False
        snapshot = watcher.of_type("presence.snapshot")[0]["participants"]
        assert {p["user"]["id"]: p["connected"] for p in snapshot} == {alice.pk: False, bob.pk: False}
        assert set(snapshot[0]) >= {"user", "connected", "connections", "left_at"}

        tab1 = await ChatClient(server.ws_url, room.pk, alice_token).connect()
        tab2 = await ChatClient(server.ws_url, room.pk, alice_token).connect()
        await watcher.wait_for(alice.pk, connected=True, connections=2, left_at=None)
        assert await asyncio.to_thread(wait_for_member, server, room.pk, bob_token, alice.pk, connected=True)

        await tab1.close()
        await watcher.wait_for(alice.pk, connected=True, connections=1)
        await watcher.send_json({"type": "ping"})
        await watcher.wait_until(lambda c: c.of_type("pong"))
        await tab2.close()
        gone = await watcher.wait_for(alice.pk, connected=False, connections=0)
        assert gone["left_at"] is not None
        row = await asyncio.to_thread(wait_for_member, server, room.pk, bob_token, alice.pk, connected=False)
        assert row["left_at"] == gone["left_at"]
        assert {"joined_at", "last_read_seq"} <= set(row)
        await watcher.close()

    asyncio.run(scenario())


@pytest.mark.redis
def test_a_second_server_process_sees_the_same_presence(server_factory):
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room(alice, bob)
    first, second = server_factory(name="web1"), server_factory(name="web2")
    alice_token, bob_token = access_token_for(alice), access_token_for(bob)

    async def scenario() -> None:
        watcher = await PresenceClient(second.ws_url, room.pk, bob_token).connect()
        await watcher.wait_for(alice.pk, connected=False)
        tab1 = await ChatClient(first.ws_url, room.pk, alice_token).connect()
        tab2 = await ChatClient(second.ws_url, room.pk, alice_token).connect()
        await watcher.wait_for(alice.pk, connected=True, connections=2)
        await tab1.close()  # closed on the first process, seen on the second
        await watcher.wait_for(alice.pk, connected=True, connections=1)
        other_watcher = await PresenceClient(first.ws_url, room.pk, alice_token).connect()
        await other_watcher.wait_for(alice.pk, connected=True, connections=1)
        await tab2.close()
        await other_watcher.wait_for(alice.pk, connected=False, connections=0)
        await watcher.wait_for(alice.pk, connected=False, connections=0)
        await watcher.close()
        await other_watcher.close()

    asyncio.run(scenario())


def test_a_server_killed_with_sigkill_leaves_no_ghost_after_the_timeout(server_factory):
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room(alice, bob)
    doomed = server_factory(env=FAST_PRESENCE, name="doomed")
    survivor = server_factory(env=FAST_PRESENCE, name="survivor")
    alice_token, bob_token = access_token_for(alice), access_token_for(bob)

    async def scenario() -> None:
        tabs = [await ChatClient(doomed.ws_url, room.pk, alice_token).connect() for _ in range(2)]
        await asyncio.to_thread(wait_for_member, survivor, room.pk, bob_token, alice.pk, connected=True)
        watcher = await PresenceClient(survivor.ws_url, room.pk, bob_token).connect()
        await watcher.wait_for(alice.pk, connected=True, connections=2)

        doomed.kill()  # no disconnect handler runs
        killed_at = time.monotonic()
        gone = await watcher.wait_for(alice.pk, timeout=15, connected=False, connections=0)
        took = time.monotonic() - killed_at
        assert took <= 4 + 1 + 3, f"ghost lasted {took:.1f} s"
        assert gone["left_at"] is not None
        await asyncio.to_thread(wait_for_member, survivor, room.pk, bob_token, alice.pk, connected=False)
        for tab in tabs:
            await tab.close()
        await watcher.close()

    asyncio.run(scenario())


def http(method: str, url: str, token: str) -> int:
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_leaving_the_room_drops_the_member_and_closes_their_presence_socket(server_factory):
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room(alice, bob)
    server = server_factory()
    alice_token, bob_token = access_token_for(alice), access_token_for(bob)

    async def scenario() -> None:
        watcher = await PresenceClient(server.ws_url, room.pk, alice_token).connect()
        leaver = await PresenceClient(server.ws_url, room.pk, bob_token).connect()
        await leaver.wait_for(bob.pk, member=True)
        leave_url = f"{server.http_url}/api/rooms/{room.pk}/leave"
        assert await asyncio.to_thread(http, "POST", leave_url, bob_token) == 200
        gone = await watcher.wait_for(bob.pk, member=False, connected=False)
        assert gone["left_at"] is not None
        assert await leaver.wait_closed() == 4403
        delete_url = f"{server.http_url}/api/rooms/{room.pk}"
        assert await asyncio.to_thread(http, "DELETE", delete_url, alice_token) == 204
        assert await watcher.wait_closed() == 4404

    asyncio.run(scenario())


@pytest.mark.redis  # the stale publish is sent from this test process through Redis
def test_a_stale_or_out_of_order_publish_never_sticks_on_a_presence_socket(server_factory):
    from presence import services

    alice, bob = make_user("alice"), make_user("bob")
    room = make_room(alice, bob)
    server = server_factory()

    async def scenario() -> None:
        watcher = await PresenceClient(server.ws_url, room.pk, access_token_for(bob)).connect()
        await watcher.wait_for(alice.pk, connected=False)
        tab = await ChatClient(server.ws_url, room.pk, access_token_for(alice)).connect()
        await watcher.wait_for(alice.pk, connected=True, connections=1)
        # A publish that arrives late, from before the tab opened (e.g. another process's close):
        before = len(watcher.of_type("presence.changed"))
        stale = services.Participant(alice.pk, alice.username, alice.nickname, False, 0, None, None)
        await services.apublish(room.pk, stale)
        await watcher.wait_until(lambda c: len(c.of_type("presence.changed")) > before)
        await asyncio.sleep(0.2)
        changed = watcher.of_type("presence.changed")
        assert changed[-1]["participant"]["connections"] == 1  # re-read: the truth, not the stale payload
        assert watcher.participant(alice.pk)["connected"] is True
        await tab.close()
        await watcher.close()

    asyncio.run(scenario())


def test_a_server_stopped_gracefully_removes_its_sockets_at_once(server_factory):
    from presence.backends import get_presence_backend

    alice, bob = make_user("alice"), make_user("bob")
    room = make_room(alice, bob)
    server = server_factory()

    async def scenario() -> None:
        tabs = [await ChatClient(server.ws_url, room.pk, access_token_for(alice)).connect() for _ in range(2)]
        await asyncio.to_thread(wait_for_member, server, room.pk, access_token_for(bob), alice.pk, connected=True)
        await asyncio.to_thread(server.stop)
        for tab in tabs:
            await tab.close()

    asyncio.run(scenario())
    assert get_presence_backend().live_connections() == []
