"""The hub's room streams: a failed open answers every waiter, and the next socket opens it afresh."""

from __future__ import annotations

import asyncio
from typing import Any

from realtime.hub import Hub


class ScriptedSource:
    """A room whose last seq is 7 (a pure unit: no database)."""

    async def last_seq(self, room_id: int) -> int | None:
        return 7

    async def last_seqs(self, room_ids: list[int]) -> dict[int, int]:
        return dict.fromkeys(room_ids, 7)

    async def frames_between(self, room_id: int, after_seq: int, up_to_seq: int) -> list[tuple[int, dict[str, Any]]]:
        return []


class GateLayer:
    """A channel layer whose group_add waits at a gate and then fails (Redis away) or succeeds."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.fail = True
        self.groups: set[str] = set()

    async def new_channel(self, prefix: str) -> str:
        return f"{prefix}.test"

    async def receive(self, channel: str) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    async def group_add(self, group: str, channel: str) -> None:
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("redis is away")
        self.groups.add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        self.groups.discard(group)


class Listener:
    user_id = 1

    def deliver_event(self, seq: int, text: str) -> None: ...
    def deliver_frame(self, text: str) -> None: ...
    def close_with(self, code: int, reason: str) -> None: ...


def test_every_socket_waiting_on_a_failed_stream_open_gets_the_error_and_the_next_one_retries():
    async def scenario() -> None:
        hub = Hub(ScriptedSource())
        hub.layer = GateLayer()
        opener = asyncio.ensure_future(hub.join_room(1, Listener()))
        await asyncio.sleep(0.01)
        waiter = asyncio.ensure_future(hub.join_room(1, Listener()))  # the stream exists: it waits
        await asyncio.sleep(0.01)
        assert not waiter.done()
        hub.layer.gate.set()
        results = await asyncio.wait_for(asyncio.gather(opener, waiter, return_exceptions=True), 2)
        assert [type(r) for r in results] == [ConnectionError, ConnectionError]
        assert hub.streams.get(1) is None, "a failed stream is dropped"

        hub.layer.fail = False
        stream = await asyncio.wait_for(hub.join_room(1, Listener()), 2)
        assert stream.last_seq == 7 and "room.1" in hub.layer.groups
        hub.stop()

    asyncio.run(scenario())


class TimedSocket:
    kind = "chat"
    room_id = None

    def __init__(self, user_id: int, expires_at: float | None, last_activity: float):
        from realtime.auth import SocketAuth

        self.user_id = user_id
        self.auth = SocketAuth("token", jti=f"j{user_id}", expires_at=expires_at)
        self.last_activity = last_activity
        self.closed: tuple[int, str] | None = None

    def deliver_event(self, seq: int, text: str) -> None: ...
    def deliver_frame(self, text: str) -> None: ...

    def close_with(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def test_expired_credentials_and_idle_sockets_close_and_nothing_else_is_touched(settings):
    settings.WS_IDLE_SECONDS = 60

    async def scenario() -> None:
        hub = Hub(ScriptedSource())
        expiring = TimedSocket(1, expires_at=1_000.0, last_activity=500.0)
        lasting = TimedSocket(2, expires_at=5_000.0, last_activity=500.0)
        idle = TimedSocket(3, expires_at=None, last_activity=400.0)
        gone = TimedSocket(4, expires_at=900.0, last_activity=500.0)
        for socket in (expiring, lasting, idle, gone):
            await hub.add_user_socket(socket)
        await hub.remove_user_socket(gone)  # closed before its expiry: its heap entry is ignored

        hub.close_expired(now=1_000.0)
        assert expiring.closed == (4401, "token expired")
        assert lasting.closed is None and gone.closed is None and idle.closed is None

        hub.close_idle(now=500.0 + 59)
        assert idle.closed == (4408, "idle too long") and lasting.closed is None
        hub.stop()

    asyncio.run(scenario())
