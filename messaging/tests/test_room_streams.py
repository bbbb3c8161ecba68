"""A room's live stream over messaging's source: seq order across out-of-order publishes, gaps filled
from the database, the catch-up sweep, and acks paced to the local fan-out."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from messaging.frames import message_frame
from messaging.services import send_message
from messaging.streams import RoomEventSource
from realtime.streams import GAP_WAIT_SECONDS, RoomStream

pytestmark = pytest.mark.django_db(transaction=True)


class RecordingSocket:
    user_id = 1

    def __init__(self) -> None:
        self.seqs: list[int] = []

    def deliver_event(self, seq: int, text: str) -> None:
        assert json.loads(text)["message"]["seq"] == seq
        self.seqs.append(seq)

    def deliver_frame(self, text: str) -> None: ...
    def close_with(self, code: int, reason: str) -> None: ...


def publish(stream: RoomStream, message: dict[str, Any]) -> None:
    """What the hub does with a room.event from the channel layer."""
    stream.on_event(message["seq"], message_frame(message))


def stored(room: Any, sender: Any, n: int) -> list[dict[str, Any]]:
    return [send_message(room_id=room.pk, sender=sender, client_id=f"h-{i}", body=str(i)).message for i in range(n)]


async def started_stream(room_id: int) -> tuple[RoomStream, RecordingSocket]:
    stream = RoomStream(RoomEventSource(), room_id)
    socket = RecordingSocket()
    stream.listeners.add(socket)
    await stream.start()
    return stream, socket


def test_publishes_arriving_out_of_order_are_delivered_in_seq_order(room_with_members):
    room, (alice, _) = room_with_members(2)

    async def scenario() -> None:
        stream, socket = await started_stream(room.pk)
        messages = await asyncio.to_thread(stored, room, alice, 3)
        for message in reversed(messages):
            publish(stream, message)
        assert socket.seqs == [m["seq"] for m in messages]
        publish(stream, messages[1])  # a duplicate publish is dropped
        assert socket.seqs == [m["seq"] for m in messages]

    asyncio.run(scenario())


def test_a_lost_publish_is_filled_from_the_database_when_a_later_one_arrives(room_with_members):
    room, (alice, _) = room_with_members(2)

    async def scenario() -> None:
        stream, socket = await started_stream(room.pk)
        messages = await asyncio.to_thread(stored, room, alice, 4)
        publish(stream, messages[3])  # 0, 1 and 2 were never published
        assert socket.seqs == []
        await asyncio.sleep(GAP_WAIT_SECONDS * 3)
        assert socket.seqs == [m["seq"] for m in messages]

    asyncio.run(scenario())


def test_a_lost_last_publish_is_caught_up_by_the_sweep(room_with_members):
    room, (alice, _) = room_with_members(2)

    async def scenario() -> None:
        stream, socket = await started_stream(room.pk)
        (message,) = await asyncio.to_thread(stored, room, alice, 1)  # committed, never published
        stream.catch_up_to(message["seq"])  # first sighting: it may still be in flight
        await asyncio.sleep(GAP_WAIT_SECONDS * 2)
        assert socket.seqs == []
        stream.catch_up_to(message["seq"])  # still behind at the next sweep: fetch it
        await asyncio.sleep(GAP_WAIT_SECONDS * 3)
        assert socket.seqs == [message["seq"]]

    asyncio.run(scenario())


def test_a_stream_starts_after_what_was_committed_before_it(room_with_members):
    room, (alice, _) = room_with_members(2)

    async def scenario() -> None:
        old = await asyncio.to_thread(stored, room, alice, 2)
        stream, socket = await started_stream(room.pk)
        for message in old:
            publish(stream, message)  # a late publish of something older than the stream
        assert socket.seqs == []
        assert stream.last_seq == old[-1]["seq"]

    asyncio.run(scenario())


def test_an_ack_waits_for_the_local_fan_out_of_its_message_but_not_forever(room_with_members):
    room, (alice, _) = room_with_members(2)

    async def scenario() -> None:
        stream, socket = await started_stream(room.pk)
        (message,) = await asyncio.to_thread(stored, room, alice, 1)
        waiting = asyncio.ensure_future(stream.wait_delivered(message["seq"], timeout=5))
        await asyncio.sleep(0.05)
        assert not waiting.done(), "not delivered here yet: the ack waits"
        publish(stream, message)
        await asyncio.wait_for(waiting, 1)
        assert socket.seqs == [message["seq"]]
        await stream.wait_delivered(message["seq"], timeout=5)  # already delivered: at once
        started = asyncio.get_running_loop().time()
        await stream.wait_delivered(message["seq"] + 1, timeout=0.2)  # never published: gives up
        assert asyncio.get_running_loop().time() - started < 1

    asyncio.run(scenario())
