"""The room hub's stream: seq order across out-of-order publishes, and gaps filled from the database."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from messaging.hub import GAP_WAIT_SECONDS, Hub, RoomStream
from messaging.services import send_message

pytestmark = pytest.mark.django_db(transaction=True)


class RecordingSocket:
    user_id = 1
    auth_jti = None

    def __init__(self) -> None:
        self.seqs: list[int] = []

    def deliver_message(self, seq: int, text: str) -> None:
        assert json.loads(text)["message"]["seq"] == seq
        self.seqs.append(seq)

    def deliver_frame(self, text: str) -> None: ...
    def close_with(self, code: int, reason: str) -> None: ...
    def sweep(self, now: float) -> None: ...


def stored(room: Any, sender: Any, n: int) -> list[dict[str, Any]]:
    return [send_message(room_id=room.pk, sender=sender, client_id=f"h-{i}", body=str(i)).message for i in range(n)]


async def started_stream(room_id: int) -> tuple[RoomStream, RecordingSocket]:
    stream = RoomStream(Hub(), room_id)
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
            stream.on_message(message)
        assert socket.seqs == [m["seq"] for m in messages]
        stream.on_message(messages[1])  # a duplicate publish is dropped
        assert socket.seqs == [m["seq"] for m in messages]

    asyncio.run(scenario())


def test_a_lost_publish_is_filled_from_the_database_when_a_later_one_arrives(room_with_members):
    room, (alice, _) = room_with_members(2)

    async def scenario() -> None:
        stream, socket = await started_stream(room.pk)
        messages = await asyncio.to_thread(stored, room, alice, 4)
        stream.on_message(messages[3])  # 0, 1 and 2 were never published
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
            stream.on_message(message)  # a late publish of something older than the stream
        assert socket.seqs == []
        assert stream.last_seq == old[-1]["seq"]

    asyncio.run(scenario())
