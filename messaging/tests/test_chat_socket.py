"""The chat socket in one process (Channels' WebsocketCommunicator): acks, resume, refusals, bad frames,
limits, typing and read. What crosses processes is in test_sockets.py, against real servers."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from accounts.testing import access_token_for
from messaging.models import Message
from messaging.testing import InProcessChatClient

pytestmark = pytest.mark.django_db(transaction=True)


def talk_seqs(client: InProcessChatClient) -> list[int]:
    return [m["seq"] for m in client.messages("TALK")]


def test_resending_a_client_id_gets_the_same_ack_and_no_second_broadcast(ws_connect, room_with_members):
    room, (alice, bob) = room_with_members(2)

    client_id = str(uuid.uuid4())

    async def scenario() -> None:
        a = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        b = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(bob)))
        await a.send_message("once", client_id)
        await a.wait_until(lambda c: len(c.of_type("ack")) == 1)
        await a.send_message("once", client_id)
        await a.wait_until(lambda c: len(c.of_type("ack")) == 2)
        await a.send_message("marker")  # a later message proves nothing else was broadcast in between
        await b.wait_until(lambda c: any(m["body"] == "marker" for m in c.messages()))
        first, second = a.of_type("ack")[:2]
        assert first == second
        assert [m["client_id"] for m in b.messages()].count(client_id) == 1
        await a.close()
        await b.close()

    asyncio.run(scenario())
    assert Message.objects.filter(client_id=client_id).count() == 1


def test_the_resume_frame_replays_after_the_given_seq_then_syncs(ws_connect, room_with_members):
    room, (alice, _bob) = room_with_members(2)

    async def scenario() -> None:
        a = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        for i in range(5):
            await a.send_message(f"m{i}")
        await a.wait_until(lambda c: len(c.messages()) == 5)
        third = a.messages()[2]["seq"]
        a.frames.clear()
        await a.send_json({"type": "resume", "after_seq": third})
        await a.wait_until(lambda c: c.of_type("synced"))
        assert talk_seqs(a) == [third + 1, third + 2]
        await a.send_json({"type": "resume", "after_seq": "x"})
        await a.wait_until(lambda c: c.of_type("error"))
        assert a.of_type("error")[0]["code"] == "invalid_frame"
        await a.close()

    asyncio.run(scenario())


def test_refused_sockets_are_accepted_then_closed_with_the_contract_codes(ws_connect, room_with_members, make_user):
    room, (alice, _) = room_with_members(2)
    outsider = make_user()

    async def close_code(room_id: int, token: str | None) -> int | None:
        client = InProcessChatClient(await ws_connect(f"/ws/rooms/{room_id}/", token))
        return await client.wait_closed()

    async def scenario() -> None:
        assert await close_code(room.pk, None) == 4401
        assert await close_code(room.pk, "not-a-jwt") == 4401
        assert await close_code(room.pk, access_token_for(outsider)) == 4403
        assert await close_code(room.pk + 999, access_token_for(alice)) == 4404
        stray = InProcessChatClient(await ws_connect("/ws/nowhere/"))
        assert await stray.wait_closed() == 4404

    asyncio.run(scenario())


def test_bad_frames_get_error_frames_and_the_socket_stays_open(ws_connect, room_with_members):
    room, (alice, _) = room_with_members(2)

    async def scenario() -> None:
        a = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        bad = [
            "not json",
            "[1, 2]",
            json.dumps({"type": 5}),
            json.dumps({"type": "dance"}),
            json.dumps({"type": "send", "client_id": 7, "body": "x"}),
            json.dumps({"type": "send", "client_id": "ok-id", "body": ["x"]}),
            json.dumps({"type": "send", "client_id": "ok-id2", "body": "   "}),
            json.dumps({"type": "send", "client_id": "ok-id3", "body": "x" * 4001}),
            json.dumps({"type": "read", "seq": "nope"}),
            "[" * 5000 + "]" * 5000,
        ]
        for raw in bad:
            await a.send_raw(raw)
        await a.send_raw(data=b"\x00\x01binary")
        await a.wait_until(lambda c: len(c.of_type("error")) == len(bad) + 1)
        codes = [f["code"] for f in a.of_type("error")]
        assert codes[:9] == [
            "invalid_json",
            "invalid_frame",
            "invalid_frame",
            "unknown_type",
            "invalid_client_id",
            "validation_error",
            "body_empty",
            "body_too_long",
            "validation_error",
        ]
        assert codes[10] == "binary_not_supported"
        await a.send_json({"type": "ping"})
        await a.wait_until(lambda c: c.of_type("pong"))
        assert a.close_code is None
        await a.close()

    asyncio.run(scenario())


def test_a_frame_over_64_kib_closes_the_socket_with_1009(ws_connect, room_with_members):
    room, (alice, _) = room_with_members(2)

    async def scenario() -> None:
        a = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        await a.send_json({"type": "send", "client_id": "big", "body": "x" * (70 * 1024)})
        assert await a.wait_closed() == 1009

    asyncio.run(scenario())
    assert not Message.objects.filter(client_id="big").exists()


def test_a_flood_gets_rate_limited_errors_then_4429(ws_connect, room_with_members, settings):
    settings.WS_MESSAGES_PER_SECOND = 5
    settings.WS_MESSAGES_BURST = 5
    room, (alice, _) = room_with_members(2)

    async def scenario() -> None:
        a = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        for _ in range(40):
            await a.send_json({"type": "ping"})
        assert await a.wait_closed() == 4429
        assert any(f.get("code") == "rate_limited" for f in a.of_type("error"))

    asyncio.run(scenario())


def test_an_idle_socket_is_closed_with_4408_and_pings_keep_one_open(ws_connect, room_with_members, settings):
    settings.WS_IDLE_SECONDS = 2
    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        idle = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        alive = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(bob)))
        for _ in range(8):
            await alive.send_json({"type": "ping"})
            await asyncio.sleep(0.5)
        assert await idle.wait_closed(timeout=5) == 4408
        assert alive.close_code is None
        await alive.close()

    asyncio.run(scenario())


def test_typing_and_read_frames_reach_the_other_members(ws_connect, room_with_members):
    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        a = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        b = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(bob)))
        await a.send_json({"type": "typing"})
        await b.wait_until(lambda c: c.of_type("typing"))
        assert b.of_type("typing")[0]["user"]["username"] == alice.username
        await a.send_message("read me")
        await b.wait_until(lambda c: c.messages())
        seq = b.messages()[0]["seq"]
        await b.send_json({"type": "read", "seq": seq})
        await a.wait_until(lambda c: c.of_type("read"))
        assert a.of_type("read")[0] == {"type": "read", "user": bob.as_public_dict(), "seq": seq}
        assert not a.of_type("typing"), "the typist does not hear their own typing"
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_the_subprotocol_pair_authenticates_and_is_echoed(ws_connect, room_with_members):
    room, (alice, _) = room_with_members(2)

    async def scenario() -> None:
        communicator = await ws_connect(
            f"/ws/rooms/{room.pk}/", subprotocols=["chattalk", f"bearer.{access_token_for(alice)}"]
        )
        assert communicator.subprotocol == "chattalk"
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from() == {"type": "pong"}
        await communicator.disconnect()

    asyncio.run(scenario())


def test_a_member_removed_while_the_close_event_is_lost_cannot_resume_and_is_closed_by_the_re_check(
    ws_connect, room_with_members, monkeypatch
):
    """The leave commits but its publish is lost (a Redis blip): a resume is refused at once, and the
    periodic re-check closes every socket of the former member within its period."""
    from realtime import watch
    from rooms import services as room_services

    room, (_alice, bob) = room_with_members(2)
    monkeypatch.setattr(room_services, "publish_member_removed", lambda room_id, user_id: None)
    monkeypatch.setattr(watch, "CHECK_SECONDS", 1.0)
    monkeypatch.setattr("realtime.hub.CHECK_SECONDS", 1.0)

    async def scenario() -> None:
        resumer = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(bob)))
        idle = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(bob)))
        await resumer.send_json({"type": "ping"})
        await resumer.wait_until(lambda c: c.of_type("pong"))
        await asyncio.to_thread(room_services.leave_room, room_id=room.pk, user=bob)
        await resumer.wait_until(lambda c: c.messages("LEAVE"))  # live, like any member's LEAVE
        assert resumer.close_code is None and idle.close_code is None, "the close event was lost"
        seen = [m["seq"] for m in resumer.messages(None)]
        await resumer.send_json({"type": "resume", "after_seq": 0})
        assert await resumer.wait_closed(timeout=5) == 4403
        assert [m["seq"] for m in resumer.messages(None)] == seen, "nothing of the history was replayed"
        assert not resumer.of_type("synced")
        assert await idle.wait_closed(timeout=5) == 4403

    asyncio.run(scenario())


def test_socket_sends_count_against_the_users_send_limit_across_all_their_sockets(
    ws_connect, room_with_members, settings
):
    settings.SEND_MESSAGES_BURST = 3
    settings.SEND_MESSAGES_PER_SECOND = 1  # 3 sends per 3 s window, per user, whichever socket or edge
    room, (alice, _bob) = room_with_members(2)

    async def scenario() -> None:
        tabs = [
            InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice))) for _ in range(2)
        ]
        # Seven sends within one or two fixed windows of three: at most six pass, whatever the window edges.
        for i in range(7):
            await tabs[i % 2].send_message(f"from tab {i % 2}", client_id=f"tab-{i}")
            await tabs[i % 2].wait_until(lambda c, i=i: any(f.get("client_id") == f"tab-{i}" for f in c.frames))
        answers = [f for tab in tabs for f in tab.frames if f.get("client_id", "").startswith("tab-")]
        refused = [f for f in answers if f["type"] == "error"]
        assert len(answers) == 7 and 1 <= len(refused) <= 4
        assert {f["code"] for f in refused} == {"rate_limited"}
        assert all(tab.close_code is None for tab in tabs), "a refused send keeps the socket"

    asyncio.run(scenario())


def test_typing_right_after_a_sent_message_reaches_the_others_although_the_last_typing_was_recent(
    ws_connect, room_with_members
):
    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        a = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        b = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(bob)))
        await a.send_json({"type": "typing"})
        await b.wait_until(lambda c: len(c.of_type("typing")) == 1)
        await a.send_json({"type": "typing"})  # within 2 s of the last: a repeat, dropped
        await a.send_message("quick")
        await a.wait_until(lambda c: c.of_type("ack"))
        await a.send_json({"type": "typing"})  # a quick reply after the send: news again
        await b.wait_until(lambda c: len(c.of_type("typing")) == 2)
        await b.send_json({"type": "ping"})
        await b.wait_until(lambda c: c.of_type("pong"))
        assert len(b.of_type("typing")) == 2
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_a_resume_on_a_process_whose_stream_lags_replays_nothing_the_client_already_has(
    ws_connect, room_with_members, monkeypatch
):
    """A client that saw seqs up to N on another process resumes here with after_seq=N while this process's
    stream of the room is still behind N (its publishes not received yet: a lagging or failed-over Redis, a
    busy hub). The replay must start after N, not after the stream's position: the contract allows no
    duplicate across a resume (the cluster bench counted them after a host cut-off)."""
    from channels.db import database_sync_to_async

    from messaging.services import send_message
    from realtime.hub import Hub

    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        a = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        await a.send_message("seen by everyone")
        await a.wait_until(lambda c: len(c.messages()) == 1)
        dispatch = Hub.dispatch
        monkeypatch.setattr(Hub, "dispatch", lambda self, event: None)  # this process hears nothing for now
        for i in range(3):
            await database_sync_to_async(send_message)(
                room_id=room.pk, sender=bob, client_id=str(uuid.uuid4()), body=f"said elsewhere {i}"
            )
        claimed = await database_sync_to_async(lambda: type(room).objects.get(pk=room.pk).last_seq)()
        b = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/?after_seq={claimed}", access_token_for(bob)))
        await b.wait_until(lambda c: c.of_type("synced"))
        assert b.of_type("synced")[0]["last_seq"] == claimed
        assert b.messages() == [], "seqs the client already had were replayed again"
        monkeypatch.setattr(Hub, "dispatch", dispatch)
        await a.send_message("after the resume")
        await b.wait_until(lambda c: c.messages())
        await asyncio.sleep(0.5)  # the stream fills its gap: the older seqs must not reach b live either
        assert talk_seqs(b) == [claimed + 1]
        await a.close()
        await b.close()

    asyncio.run(scenario())


def test_a_message_committed_while_a_socket_without_after_seq_opens_its_rooms_stream_reaches_it(
    ws_connect, room_with_members, monkeypatch
):
    """A socket opened without after_seq gets what is sent once it is open. The room's stream reads its
    starting point after the accept; a message committed in between used to be neither live nor replayed
    (the socket saw it only when the next message of the room made the stream fill its gap)."""
    from channels.db import database_sync_to_async

    from messaging.services import send_message
    from realtime.streams import RoomStream

    room, (alice, bob) = room_with_members(2)
    start = RoomStream.start

    async def start_after_a_send(stream: RoomStream) -> None:
        await database_sync_to_async(send_message)(
            room_id=room.pk, sender=bob, client_id=str(uuid.uuid4()), body="sent while the stream opened"
        )
        await start(stream)

    monkeypatch.setattr(RoomStream, "start", start_after_a_send)

    async def scenario() -> None:
        a = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/", access_token_for(alice)))
        await a.wait_until(lambda c: c.messages(), timeout=5)
        assert [m["body"] for m in a.messages()] == ["sent while the stream opened"]
        assert not a.of_type("synced"), "a connect without after_seq asked for no replay"
        await a.close()

    asyncio.run(scenario())
