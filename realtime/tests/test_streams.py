"""A room stream's fan-out: in slices that let the event loop through, in order for every socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from realtime.streams import FANOUT_SLICE, RoomStream


class NoHistory:
    async def last_seq(self, room_id: int) -> int | None:
        return 0

    async def last_seqs(self, room_ids: list[int]) -> dict[int, int]:
        return dict.fromkeys(room_ids, 0)

    async def frames_between(self, room_id: int, after_seq: int, up_to_seq: int) -> list[tuple[int, dict[str, Any]]]:
        return []


class Recorder:
    def __init__(self, user_id: int, log: list[tuple[str, int, int]]):
        self.user_id = user_id
        self.log = log

    def deliver_event(self, seq: int, text: str) -> None:
        assert json.loads(text)["n"] == seq
        self.log.append(("event", self.user_id, seq))

    def deliver_frame(self, text: str) -> None: ...
    def close_with(self, code: int, reason: str) -> None: ...


def test_a_big_rooms_events_are_written_in_slices_in_order_while_other_work_runs_between_slices():
    async def scenario() -> None:
        log: list[tuple[str, int, int]] = []
        stream = RoomStream(NoHistory(), 1)
        members = FANOUT_SLICE * 4
        for user_id in range(members):
            stream.listeners.add(Recorder(user_id, log))
        await stream.start()

        async def other_room_work() -> None:
            log.append(("other", -1, 0))

        for seq in (1, 2, 3):
            stream.on_event(seq, {"n": seq})
        asyncio.ensure_future(other_room_work())  # scheduled while the burst is being written
        assert len(log) <= FANOUT_SLICE, "the burst does not hold the loop: at most one slice at once"
        await stream.wait_delivered(3, timeout=5)
        assert stream.delivered_seq == 3

        other_at = log.index(("other", -1, 0))
        assert 0 < other_at < 3 * members, "other work ran between slices of the burst"
        per_socket: dict[int, list[int]] = {}
        for kind, user_id, seq in log:
            if kind == "event":
                per_socket.setdefault(user_id, []).append(seq)
        assert len(per_socket) == members
        assert all(seqs == [1, 2, 3] for seqs in per_socket.values()), "every socket: each event once, in order"

    asyncio.run(scenario())


def test_a_small_rooms_event_is_written_at_once_without_a_task():
    async def scenario() -> None:
        log: list[tuple[str, int, int]] = []
        stream = RoomStream(NoHistory(), 1)
        stream.listeners.add(Recorder(1, log))
        await stream.start()
        stream.on_event(1, {"n": 1})
        assert log == [("event", 1, 1)] and stream.delivered_seq == 1

    asyncio.run(scenario())


class SupersededHistory(NoHistory):
    """A database in which seqs 2 and 3 were changes that a later change (5) superseded: not returned."""

    def __init__(self) -> None:
        self.reads: list[tuple[int, int]] = []

    async def frames_between(self, room_id: int, after_seq: int, up_to_seq: int) -> list[tuple[int, dict[str, Any]]]:
        self.reads.append((after_seq, up_to_seq))
        return [(seq, {"n": seq}) for seq in (1, 4) if after_seq < seq <= up_to_seq]


def test_a_gap_whose_seqs_the_database_no_longer_shows_is_settled_by_one_read_not_waited_for():
    async def scenario() -> None:
        log: list[tuple[str, int, int]] = []
        source = SupersededHistory()
        stream = RoomStream(source, 1)
        stream.listeners.add(Recorder(1, log))
        await stream.start()
        stream.on_event(5, {"n": 5})  # 1..4 were never published here (lost, or superseded)
        await stream.wait_delivered(5, timeout=3)
        assert [seq for _kind, _user, seq in log] == [1, 4, 5]
        assert stream.last_seq == 5 and source.reads == [(0, 4)]

    asyncio.run(scenario())
