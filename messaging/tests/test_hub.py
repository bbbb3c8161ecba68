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


class SlowDiscardLayer:
    """A channel layer whose group_discard is slower than group_add, as two Redis connections can be."""

    def __init__(self) -> None:
        self.members: set[str] = set()
        self.in_flight = 0
        self.most_in_flight = 0

    async def _op(self, delay: float) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(delay)
        self.in_flight -= 1

    async def group_add(self, group: str, channel: str) -> None:
        await self._op(0)
        self.members.add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        await self._op(0.05)
        self.members.discard(group)


@pytest.mark.django_db(transaction=False)
def test_a_rejoin_is_never_overtaken_by_the_slower_leave_before_it():
    async def scenario() -> None:
        hub = Hub()
        hub.layer = SlowDiscardLayer()
        hub.channel_name = "hub.test"
        await hub._add_group("room.1")
        leaving = asyncio.ensure_future(hub._discard_group("room.1"))
        await asyncio.sleep(0)  # the discard is on its way
        await hub._add_group("room.1")  # a new socket of the room arrives
        await leaving
        assert "room.1" in hub.layer.members

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=False)
def test_group_operations_are_bounded_when_thousands_of_sockets_close_at_once():
    from messaging.hub import GROUP_OPS_AT_ONCE

    async def scenario() -> None:
        hub = Hub()
        hub.layer = SlowDiscardLayer()
        hub.channel_name = "hub.test"
        for i in range(300):
            await hub._add_group(f"user.{i}")
        await asyncio.gather(*(hub._discard_group(f"user.{i}") for i in range(300)))
        assert not hub.layer.members
        assert hub.layer.most_in_flight <= GROUP_OPS_AT_ONCE

    asyncio.run(scenario())


def test_an_ack_waits_for_the_local_fan_out_of_its_message_but_not_forever(room_with_members):
    room, (alice, _) = room_with_members(2)

    async def scenario() -> None:
        stream, socket = await started_stream(room.pk)
        (message,) = await asyncio.to_thread(stored, room, alice, 1)
        waiting = asyncio.ensure_future(stream.wait_delivered(message["seq"], timeout=5))
        await asyncio.sleep(0.05)
        assert not waiting.done(), "not delivered here yet: the ack waits"
        stream.on_message(message)
        await asyncio.wait_for(waiting, 1)
        assert socket.seqs == [message["seq"]]
        await stream.wait_delivered(message["seq"], timeout=5)  # already delivered: at once
        started = asyncio.get_running_loop().time()
        await stream.wait_delivered(message["seq"] + 1, timeout=0.2)  # never published: gives up
        assert asyncio.get_running_loop().time() - started < 1

    asyncio.run(scenario())
