"""The per-process hub: the only reader of the channel layer in a ChatTalk process.

The Channels tutorial gives every socket a channel and sends one channel-layer message per socket per chat
message. Here each process owns one channel, joins a room's group while it holds a socket of the room (and a
user's group while it holds a socket of the user), receives each event once, encodes it once and writes it
to its local sockets. The hub composes the parts that do each job: group subscriptions (realtime.groups),
room streams (realtime.streams) and the periodic re-check of sockets (realtime.watch).

Sockets have no timers of their own, so an idle socket costs (almost) nothing: credential expiries sit in
one heap that the hub pops each second (work only for sockets that expire), and idleness is one comparison
per socket every IDLE_CHECK_SECONDS.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import Counter
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from .auth import SocketAuth
from .frames import CLOSE_FORBIDDEN, CLOSE_IDLE, CLOSE_NOT_AUTHENTICATED, CLOSE_NOT_FOUND, encode
from .groups import GroupSubscriptions, room_group, user_group
from .socket_cap import SocketCap, new_socket_cap
from .streams import RoomStream, RoomStreams, StreamSource
from .watch import (
    CHANGE_MARGIN_SECONDS,
    CHECK_SECONDS,
    FULL_CHECK_SECONDS,
    Changes,
    SocketSnapshot,
    changes_since,
    failing_snapshots,
)

logger = logging.getLogger(__name__)

EXPIRY_CHECK_SECONDS = 1.0
IDLE_CHECK_SECONDS = 5.0
# channels' group membership expires (group_expiry, one day by default): re-add well before that.
GROUP_REFRESH_SECONDS = 3600.0


class HubSocket(Protocol):
    """What the hub needs of a local socket (realtime.sockets.SocketBase)."""

    kind: str
    connection_id: str  # its seat under the per-user socket cap (realtime.socket_cap)
    user_id: int
    room_id: int | None
    auth: SocketAuth | None
    last_activity: float  # time.monotonic() of the client's last frame
    receives_user_frames: bool  # frames addressed to the user (mentions, room activity) reach this socket

    def deliver_event(self, seq: int, text: str, visible_seq: int | None = None) -> None: ...
    def deliver_frame(self, text: str) -> None: ...
    def close_with(self, code: int, reason: str) -> None: ...


class GroupListener(Protocol):
    """Any other local subscriber of a group (a presence feed): gets every event of its group."""

    def hub_event(self, event: dict[str, Any]) -> None: ...


_stream_source: StreamSource | None = None


def use_stream_source(source: StreamSource) -> None:
    """Set once at start-up by the app that writes rooms' events (messaging)."""
    global _stream_source
    _stream_source = source


class Hub:
    def __init__(self, source: StreamSource | None = None) -> None:
        if source is None and _stream_source is None:
            raise RuntimeError("no stream source: the messaging app registers one when it is ready")
        self.layer = get_channel_layer()
        self.channel_name: str | None = None
        self.subscriptions: GroupSubscriptions | None = None
        self.streams = RoomStreams(source or _stream_source)  # type: ignore[arg-type]
        self.users: dict[int, set[HubSocket]] = {}
        self.socket_counts: Counter[str] = Counter()  # by socket kind, for /metrics
        self.room_socket_counts: Counter[int] = Counter()  # sockets per room id, for the re-check's changes
        self.group_listeners: dict[str, set[GroupListener]] = {}
        self.socket_cap: SocketCap = new_socket_cap()
        self._expiries: list[tuple[float, int, HubSocket]] = []  # heap of (expires_at, n, socket)
        self._expiry_numbers = itertools.count()
        self._started: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- life cycle ---------------------------------------------------------------------------------
    async def ensure_started(self) -> None:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                self.channel_name = await self.layer.new_channel("hub")
            except BaseException as exc:
                self._started.set_exception(exc)
                self._started.exception()
                self._started = None
                raise
            self.subscriptions = GroupSubscriptions(self.layer, self.channel_name)
            self._tasks = [
                asyncio.ensure_future(loop())
                for loop in (
                    self._receive_loop,
                    self._expiry_loop,
                    self._idle_loop,
                    self._refresh_loop,
                    self.streams.catch_up_loop,
                    self._watch_loop,
                )
            ]
            if self.socket_cap.shared:
                self._tasks.append(asyncio.ensure_future(self._socket_cap_loop()))
            self._started.set_result(None)
        await asyncio.shield(self._started)

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for stream in list(self.streams.by_room.values()):
            self.streams.drop(stream)

    async def _receive_loop(self) -> None:
        assert self.channel_name is not None and self.subscriptions is not None
        while True:
            try:
                event = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis away: keep trying, gaps are filled from the database
                logger.exception("hub receive failed; retrying in 1 s")
                await asyncio.sleep(1.0)
                await self.subscriptions.refresh()  # a restarted Redis has forgotten our groups
                continue
            try:
                self.dispatch(event)
            except Exception:  # noqa: BLE001 - one bad event must not stop the hub
                logger.exception("hub could not dispatch %r", event.get("type"))

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_CHECK_SECONDS)
            self.close_expired(time.time())

    def close_expired(self, now: float) -> None:
        """Close (4401) the sockets whose credential expired by `now`; forget closed sockets' entries."""
        while self._expiries and self._expiries[0][0] <= now:
            _at, _n, socket = heapq.heappop(self._expiries)
            if socket in self.users.get(socket.user_id, ()):
                socket.close_with(CLOSE_NOT_AUTHENTICATED, "token expired")
        if len(self._expiries) > 2 * sum(self.socket_counts.values()) + 64:
            self._expiries = [e for e in self._expiries if e[2] in self.users.get(e[2].user_id, ())]
            heapq.heapify(self._expiries)

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(min(IDLE_CHECK_SECONDS, settings.WS_IDLE_SECONDS / 4))
            self.close_idle(time.monotonic())

    def close_idle(self, now: float) -> None:
        """Close (4408) the sockets whose client sent nothing for WS_IDLE_SECONDS."""
        limit = now - settings.WS_IDLE_SECONDS
        for sockets in list(self.users.values()):
            for socket in tuple(sockets):
                if socket.last_activity < limit:
                    socket.close_with(CLOSE_IDLE, "idle too long")

    async def _socket_cap_loop(self) -> None:
        """Renew the seats of every local socket under the cluster-wide cap: one round trip per process."""
        while True:
            await asyncio.sleep(self.socket_cap.renew_interval)
            seats = {user_id: [s.connection_id for s in sockets] for user_id, sockets in self.users.items()}
            try:
                await self.socket_cap.renew(seats)
            except Exception:  # noqa: BLE001 - Redis away: the next round renews; seats last a whole TTL
                logger.warning("socket cap: renewing this process's seats failed; retrying", exc_info=True)

    async def _refresh_loop(self) -> None:
        assert self.subscriptions is not None
        while True:
            await asyncio.sleep(GROUP_REFRESH_SECONDS)
            await self.subscriptions.refresh()

    async def _watch_loop(self) -> None:
        """Rounds of what changed, a full one every FULL_CHECK_SECONDS. `since` moves on only after a round
        succeeded, so what a failed round missed is read by the next one."""
        since = time.time() - CHANGE_MARGIN_SECONDS
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            started, full = time.time(), time.monotonic() - last_full >= FULL_CHECK_SECONDS
            if await self.check_sockets(None if full else since):
                since = started - CHANGE_MARGIN_SECONDS
                if full:
                    last_full = time.monotonic()

    async def check_sockets(self, since: float | None = None) -> bool:
        """One round of the periodic re-check (realtime.watch): every local socket (`since` None), or those
        of the users and rooms that changed since `since`. False when the round could not be done."""
        if not self.users:
            return True
        try:
            if since is None:
                sockets = [socket for sockets in self.users.values() for socket in sockets]
            else:
                rooms = list(self.room_socket_counts)
                changes = await database_sync_to_async(changes_since)(since, rooms)
                sockets = self._sockets_touched_by(changes)
            if not sockets:
                return True
            snapshots = [SocketSnapshot(s.user_id, s.auth, s.room_id) for s in sockets]
            failing = await database_sync_to_async(failing_snapshots)(snapshots)
        except Exception:  # noqa: BLE001 - cache or database away: the next round tries again
            logger.warning("socket re-check failed; retrying")
            return False
        for socket, snapshot in zip(sockets, snapshots, strict=True):
            verdict = failing.get(snapshot)
            if verdict is not None:
                socket.close_with(*verdict)
        return True

    def _sockets_touched_by(self, changes: Changes | None) -> list[HubSocket]:
        """The local sockets a round must check: all (None: a check cannot tell), else those of the changed
        users and rooms (a room's sockets are found by one pass, and rooms change rarely)."""
        if changes is None:
            return [socket for sockets in self.users.values() for socket in sockets]
        touched = {socket for user_id in changes.user_ids for socket in self.users.get(user_id, ())}
        rooms = changes.room_ids & self.room_socket_counts.keys()
        if rooms:
            touched.update(s for sockets in self.users.values() for s in sockets if s.room_id in rooms)
        return list(touched)

    # --- subscriptions ------------------------------------------------------------------------------
    def _group_in_use(self, group: str) -> bool:
        if self.group_listeners.get(group):
            return True
        kind, _, key = group.partition(".")
        if kind == "room":
            return int(key) in self.streams.by_room
        if kind == "user":
            return int(key) in self.users
        return False

    async def _release(self, group: str) -> None:
        if not self._group_in_use(group) and self.subscriptions is not None:
            await self.subscriptions.discard(group)

    async def add_user_socket(self, socket: HubSocket) -> None:
        """Count the socket for its user: revocations, sweeps and re-checks reach it from now on."""
        await self.ensure_started()
        assert self.subscriptions is not None
        self.users.setdefault(socket.user_id, set()).add(socket)
        self.socket_counts[socket.kind] += 1
        if socket.room_id is not None:
            self.room_socket_counts[socket.room_id] += 1
        expires_at = socket.auth.expires_at if socket.auth is not None else None
        if expires_at is not None:
            heapq.heappush(self._expiries, (expires_at, next(self._expiry_numbers), socket))
        await self.subscriptions.add(user_group(socket.user_id))

    async def remove_user_socket(self, socket: HubSocket) -> None:
        sockets = self.users.get(socket.user_id)
        if sockets is None or socket not in sockets:
            return
        sockets.discard(socket)
        self.socket_counts[socket.kind] -= 1
        if socket.room_id is not None:
            self.room_socket_counts[socket.room_id] -= 1
            if self.room_socket_counts[socket.room_id] <= 0:
                del self.room_socket_counts[socket.room_id]
        if not sockets:
            del self.users[socket.user_id]
            await self._release(user_group(socket.user_id))

    def sockets_of(self, user_id: int) -> int:
        return len(self.users.get(user_id, ()))

    async def join_room(self, room_id: int, socket: HubSocket) -> RoomStream:
        """Add a socket to the room's live stream; returns once the stream delivers in order.

        The first socket of a room opens the stream (joins the group, reads the starting point); later
        ones wait for that. If it fails, every waiter gets the same error and the stream is dropped, so
        the next socket tries again.
        """
        await self.ensure_started()
        assert self.subscriptions is not None
        stream, new = self.streams.open(room_id)
        stream.listeners.add(socket)
        if new:
            try:
                await self.subscriptions.add(room_group(room_id))
                await stream.start()
            except BaseException as exc:
                stream.fail(exc)
                self.streams.drop(stream)
                await self._release(room_group(room_id))
                raise
        else:
            try:
                await asyncio.shield(stream.started)
            except BaseException:
                stream.listeners.discard(socket)
                raise
        return stream

    async def leave_room(self, room_id: int, socket: HubSocket) -> None:
        stream = self.streams.get(room_id)
        if stream is None:
            return
        stream.listeners.discard(socket)
        if not stream.listeners:
            self.streams.drop(stream)
            await self._release(room_group(room_id))

    async def add_group_listener(self, group: str, listener: GroupListener) -> None:
        await self.ensure_started()
        assert self.subscriptions is not None
        self.group_listeners.setdefault(group, set()).add(listener)
        await self.subscriptions.add(group)

    async def remove_group_listener(self, group: str, listener: GroupListener) -> None:
        listeners = self.group_listeners.get(group)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self.group_listeners[group]
            await self._release(group)

    # --- dispatch -----------------------------------------------------------------------------------
    def dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "user.revoked":
            jti = event.get("jti")
            for socket in tuple(self.users.get(int(event["user_id"]), ())):
                if jti is None or (socket.auth is not None and socket.auth.jti == jti):
                    socket.close_with(CLOSE_NOT_AUTHENTICATED, "token revoked")
        elif kind == "user.frame":
            text = encode(event["frame"])
            for socket in tuple(self.users.get(int(event["user_id"]), ())):
                if socket.receives_user_frames:
                    socket.deliver_frame(text)
        elif "room_id" in event:
            stream = self.streams.get(int(event["room_id"]))
            if stream is not None:
                if kind == "room.event":
                    stream.on_event(
                        int(event["seq"]), event["frame"], event.get("sent_at"), event.get("visible_seq")
                    )
                elif kind == "room.frame":
                    stream.deliver_frame(encode(event["frame"]), event.get("exclude_user_id"))
                elif kind == "room.member_removed":
                    stream.close_sockets(CLOSE_FORBIDDEN, "no longer a member of this room", int(event["user_id"]))
                elif kind == "room.deleted":
                    stream.close_sockets(CLOSE_NOT_FOUND, "the room was deleted")
        group = event.get("group") or (room_group(int(event["room_id"])) if "room_id" in event else "")
        for listener in tuple(self.group_listeners.get(group, ())):
            try:
                listener.hub_event(event)
            except Exception:  # noqa: BLE001
                logger.exception("group listener failed on %r", kind)


_hub: Hub | None = None


def get_hub() -> Hub:
    """The process's hub, created on first use inside the serving event loop."""
    global _hub
    if _hub is None:
        _hub = Hub()
    return _hub


def current_hub() -> Hub | None:
    """The hub if this process has one (for /metrics: no hub is made just to be measured)."""
    return _hub


def reset_hub_for_tests() -> None:
    """Forget the hub (a test's event loop is gone with its tasks; the next test makes a new one)."""
    global _hub
    if _hub is not None:
        try:
            _hub.stop()
        except RuntimeError:  # its loop is closed: its tasks went with it
            pass
    _hub = None
