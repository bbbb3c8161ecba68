"""The per-process room hub: the only reader of the channel layer in a ChatTalk process.

Why: the Channels tutorial gives every socket its own channel and sends one channel-layer message per socket
per chat message (group_send to N channels). With 1,000 members that is 1,000 Redis writes, 1,000 reads and
1,000 JSON decodes for one message. Here each process owns one channel, joins a room's group while it holds
at least one socket of that room, and receives each room event once. It encodes the frame once and writes it
to its local sockets.

It also keeps each room's live stream gapless and in seq order: publishes from different processes can
arrive out of order, and a publish can be lost (a process dying between commit and publish, a Redis blip).
Frames ahead of the next expected seq wait briefly, then the missing seqs are read from the database.

Sockets subscribe as listeners (see HubListener). A periodic sweep asks every local socket whether it should
close (idle, token expired or revoked), so that no socket needs a timer task of its own.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from accounts.realtime import user_group
from accounts.tokens import SocketCredential, revoked_socket_credentials
from chattalk_project.metrics import SEND_TO_DELIVERY_SECONDS

from .groups import room_group

logger = logging.getLogger(__name__)

GAP_WAIT_SECONDS = 0.25
SWEEP_SECONDS = 1.0
# How often the hub compares its rooms' streams with the database. A room seen behind twice in a row is
# caught up from the database: that covers a publish lost with no later message to reveal the gap.
CATCH_UP_SECONDS = 5.0
# Revocations travel as events (user.revoked); this periodic re-check closes sockets whose event was lost.
REVOCATION_CHECK_SECONDS = 5.0
GROUP_OPS_AT_ONCE = 50
# channels' group membership expires (group_expiry, one day by default): re-add well before that.
GROUP_REFRESH_SECONDS = 3600.0


class HubListener(Protocol):
    """What the hub needs of a local socket."""

    user_id: int
    auth_jti: str | None

    def deliver_message(self, seq: int, text: str) -> None: ...
    def deliver_frame(self, text: str) -> None: ...
    def close_with(self, code: int, reason: str) -> None: ...
    def sweep(self, now: float) -> None: ...


def observe_send_to_delivery(created_at: str | None) -> None:
    """Feed /metrics' latency histogram; never lets a bad timestamp disturb delivery."""
    try:
        SEND_TO_DELIVERY_SECONDS.observe(max(0.0, time.time() - datetime.fromisoformat(created_at).timestamp()))
    except (TypeError, ValueError):
        pass


_waiter_numbers = itertools.count()  # tie-breaker: futures do not compare


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


@database_sync_to_async
def _room_last_seq(room_id: int) -> int | None:
    from rooms.models import Room

    return Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).first()


@database_sync_to_async
def _rooms_last_seq(room_ids: list[int]) -> dict[int, int]:
    from rooms.models import Room

    return dict(Room.objects.filter(pk__in=room_ids).values_list("id", "last_seq"))


_revoked_socket_credentials = database_sync_to_async(revoked_socket_credentials)


@database_sync_to_async
def _messages_between(room_id: int, after_seq: int, up_to_seq: int) -> list[dict[str, Any]]:
    from .services import messages_between

    return messages_between(room_id=room_id, after_seq=after_seq, up_to_seq=up_to_seq)


class RoomStream:
    """The live, gapless, ordered stream of one room in this process."""

    def __init__(self, hub: Hub, room_id: int):
        self.hub = hub
        self.room_id = room_id
        self.listeners: set[HubListener] = set()
        self.last_seq: int | None = None  # None while the starting point is read
        self.pending: dict[int, dict[str, Any]] = {}
        self.ready = asyncio.Event()
        self._gap_task: asyncio.Task[None] | None = None
        self.behind_at: int | None = None  # last_seq when the catch-up sweep last saw this stream behind
        self.known_last_seq = 0  # a seq the database is known to have committed (from the catch-up sweep)
        self.delivery_waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # heap of (seq, n, future)

    def _behind(self) -> bool:
        return bool(self.pending) or (self.last_seq is not None and self.known_last_seq > self.last_seq)

    async def start(self) -> None:
        last_seq = await _room_last_seq(self.room_id)
        self.last_seq = last_seq if last_seq is not None else 0
        for seq in [s for s in self.pending if s <= self.last_seq]:
            del self.pending[seq]
        self.ready.set()
        self._drain()

    def on_message(self, message: dict[str, Any]) -> None:
        seq = int(message["seq"])
        if self.last_seq is not None and seq <= self.last_seq:
            return  # already delivered (a gap fill got it first) or older than this stream
        self.pending[seq] = message
        if self.last_seq is not None:
            self._drain()

    def _drain(self) -> None:
        self._drain_ready()
        if self.pending and (self._gap_task is None or self._gap_task.done()):
            self._gap_task = asyncio.ensure_future(self._fill_gap())

    def _drain_ready(self) -> None:
        """Deliver every pending frame that is next in seq order."""
        assert self.last_seq is not None
        while self.last_seq + 1 in self.pending:
            message = self.pending.pop(self.last_seq + 1)
            self.last_seq += 1
            self._deliver(message)
        while self.delivery_waiters and self.delivery_waiters[0][0] <= self.last_seq:
            _seq, _n, waiter = heapq.heappop(self.delivery_waiters)
            if not waiter.done():
                waiter.set_result(None)

    def is_behind(self, seq: int) -> bool:
        """True while messages before `seq` are still undelivered here: the fan-out lags the senders."""
        return self.last_seq is None or seq - self.last_seq > 1

    async def wait_delivered(self, seq: int, timeout: float) -> None:
        """Return once this process has handed `seq` to its local sockets, or after `timeout`.

        The chat consumer waits for this before acking a send when the stream is behind (`is_behind`): the
        ack then paces a sender to the speed at which this process can fan its messages out, so a room whose
        senders outrun the fan-out slows them down instead of queueing frames without bound; a stream that
        keeps up costs the ack nothing.
        """
        if self.last_seq is not None and seq <= self.last_seq:
            return
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self.delivery_waiters, (seq, next(_waiter_numbers), waiter))
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            pass  # a lost publish is filled later by the catch-up sweep; the ack must not wait for it

    def _deliver(self, message: dict[str, Any]) -> None:
        text = encode({"type": "message", "message": message})
        seq = int(message["seq"])
        self.hub.messages += 1
        self.hub.deliveries += len(self.listeners)
        observe_send_to_delivery(message.get("created_at"))
        for listener in tuple(self.listeners):
            listener.deliver_message(seq, text)

    async def _fill_gap(self) -> None:
        await asyncio.sleep(GAP_WAIT_SECONDS)
        attempts = 0
        while self._behind() and self.last_seq is not None and (self.last_seq + 1) not in self.pending:
            up_to = min(self.pending) - 1 if self.pending else self.known_last_seq
            try:
                missing = await _messages_between(self.room_id, self.last_seq, up_to)
            except Exception:  # noqa: BLE001 - database away: try again shortly
                logger.warning("gap fill of room %s failed; retrying in 1 s", self.room_id)
                await asyncio.sleep(1.0)
                continue
            for message in missing:
                self.pending.setdefault(int(message["seq"]), message)
            self._drain_ready()
            attempts += 1
            if self.last_seq + 1 not in self.pending and self._behind():
                if attempts >= 20 and self.pending:
                    # seq is gapless by construction, so a seq that never appears was removed with its row
                    # (a deleted room's cascade, a manual delete): skip it rather than stall the room.
                    logger.error(
                        "room %s: seqs %s..%s never appeared; skipping", self.room_id, self.last_seq + 1, up_to
                    )
                    self.last_seq = min(self.pending) - 1
                else:
                    await asyncio.sleep(GAP_WAIT_SECONDS)
        self._drain_ready()

    def catch_up_to(self, database_last_seq: int) -> None:
        """Called by the catch-up sweep: fill from the database if the stream stays behind it."""
        if self.last_seq is None or database_last_seq <= self.last_seq:
            self.behind_at = None
            return
        if self.behind_at is not None and self.last_seq <= self.behind_at:
            # Behind at two sweeps in a row without moving: the publish is lost, not late.
            self.known_last_seq = max(self.known_last_seq, database_last_seq)
            if self._gap_task is None or self._gap_task.done():
                self._gap_task = asyncio.ensure_future(self._fill_gap())
        self.behind_at = self.last_seq

    def stop(self) -> None:
        if self._gap_task is not None:
            self._gap_task.cancel()


class Hub:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel_name: str | None = None
        self.rooms: dict[int, RoomStream] = {}
        self.users: dict[int, set[HubListener]] = {}
        self.group_added: dict[str, asyncio.Future[None]] = {}
        self.group_listeners: dict[str, set[Any]] = {}
        self._group_ops: asyncio.Semaphore | None = None
        self._group_tail: dict[str, asyncio.Future[None]] = {}
        self.deliveries = 0
        self.messages = 0  # room messages handed to local sockets (once per message); /metrics reads both
        self.last_typing: dict[tuple[int, int], float] = {}
        self._started: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- life cycle ---------------------------------------------------------------------------------
    async def ensure_started(self) -> None:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            self.channel_name = await self.layer.new_channel("hub")
            self._tasks = [
                asyncio.ensure_future(self._receive_loop()),
                asyncio.ensure_future(self._sweep_loop()),
                asyncio.ensure_future(self._refresh_groups_loop()),
                asyncio.ensure_future(self._catch_up_loop()),
                asyncio.ensure_future(self._revocation_loop()),
            ]
            self._started.set_result(None)
        await self._started

    async def _receive_loop(self) -> None:
        assert self.channel_name is not None
        while True:
            try:
                event = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis away: keep trying, gaps are filled from the database
                logger.exception("hub receive failed; retrying in 1 s")
                await asyncio.sleep(1.0)
                # A restarted Redis has forgotten our group memberships: add them again.
                await self._refresh_groups()
                continue
            try:
                self.dispatch(event)
            except Exception:  # noqa: BLE001 - one bad event must not stop the hub
                logger.exception("hub could not dispatch %r", event.get("type"))

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.monotonic()
            for listeners in list(self.users.values()):
                for listener in tuple(listeners):
                    try:
                        listener.sweep(now)
                    except Exception:  # noqa: BLE001
                        logger.exception("sweep of a socket failed")

    async def _refresh_groups_loop(self) -> None:
        while True:
            await asyncio.sleep(GROUP_REFRESH_SECONDS)
            await self._refresh_groups()

    async def _refresh_groups(self) -> None:
        for group in list(self.group_added):
            try:
                await self._group_op(self.layer.group_add, group)
            except Exception:  # noqa: BLE001
                logger.warning("could not refresh group %s; will retry", group)

    async def _revocation_loop(self) -> None:
        while True:
            await asyncio.sleep(REVOCATION_CHECK_SECONDS)
            sockets = [listener for listeners in self.users.values() for listener in listeners]
            credentials = [
                SocketCredential(
                    user_id=listener.user_id,
                    jti=listener.auth_jti,
                    issued_at=getattr(listener, "auth_issued_at", None),
                    session_key=getattr(listener, "auth_session_key", None),
                    generation=getattr(listener, "auth_generation", None),
                    family=getattr(listener, "auth_family", None),
                )
                for listener in sockets
            ]
            try:
                revoked = await _revoked_socket_credentials(credentials)
            except Exception:  # noqa: BLE001 - cache or database away: the next round tries again
                logger.warning("revocation re-check failed; retrying")
                continue
            for index in revoked:
                sockets[index].close_with(4401, "token_revoked")

    async def _catch_up_loop(self) -> None:
        while True:
            await asyncio.sleep(CATCH_UP_SECONDS)
            room_ids = [room_id for room_id, stream in self.rooms.items() if stream.last_seq is not None]
            if not room_ids:
                continue
            try:
                database_seqs = await _rooms_last_seq(room_ids)
            except Exception:  # noqa: BLE001 - database away: the next sweep tries again
                logger.warning("catch-up sweep could not read the rooms; retrying")
                continue
            for room_id, last_seq in database_seqs.items():
                stream = self.rooms.get(room_id)
                if stream is not None:
                    stream.catch_up_to(last_seq)

    # --- groups -------------------------------------------------------------------------------------
    async def _group_op(self, op: Any, group: str) -> None:
        """Run group_add/group_discard one at a time per group (an add must not be overtaken by an older
        discard), and at most GROUP_OPS_AT_ONCE at a time overall: thousands of sockets closing at once
        would otherwise ask the Redis pool for thousands of connections, and redis-py refuses past its size."""
        if self._group_ops is None:
            self._group_ops = asyncio.Semaphore(GROUP_OPS_AT_ONCE)
        previous = self._group_tail.get(group)
        done = asyncio.get_running_loop().create_future()
        self._group_tail[group] = done
        try:
            if previous is not None:
                await previous
            async with self._group_ops:
                await op(group, self.channel_name)
        finally:
            done.set_result(None)
            if self._group_tail.get(group) is done:
                del self._group_tail[group]

    async def _add_group(self, group: str) -> None:
        added = self.group_added.get(group)
        if added is None:
            added = asyncio.get_running_loop().create_future()
            self.group_added[group] = added
            try:
                await self._group_op(self.layer.group_add, group)
            except BaseException as exc:
                del self.group_added[group]
                added.set_exception(exc)
                added.exception()  # mark retrieved
                raise
            added.set_result(None)
        await added

    async def _discard_group(self, group: str) -> None:
        if self.group_added.pop(group, None) is not None:
            try:
                await self._group_op(self.layer.group_discard, group)
            except Exception:  # noqa: BLE001 - a stale membership only costs a dropped event
                logger.warning("could not leave group %s", group)

    # --- subscriptions ------------------------------------------------------------------------------
    async def add_user_listener(self, listener: HubListener) -> None:
        await self.ensure_started()
        listeners = self.users.setdefault(listener.user_id, set())
        listeners.add(listener)
        await self._add_group(user_group(listener.user_id))

    async def remove_user_listener(self, listener: HubListener) -> None:
        listeners = self.users.get(listener.user_id)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self.users[listener.user_id]
            await self._discard_group(user_group(listener.user_id))

    async def join_room(self, room_id: int, listener: HubListener) -> RoomStream:
        """Add a socket to the room's live stream; returns once the stream delivers in order."""
        await self.ensure_started()
        stream = self.rooms.get(room_id)
        if stream is None:
            stream = RoomStream(self, room_id)
            self.rooms[room_id] = stream
            stream.listeners.add(listener)
            try:
                await self._add_group(room_group(room_id))
                await stream.start()
            except BaseException:
                self.rooms.pop(room_id, None)
                raise
        else:
            stream.listeners.add(listener)
            await stream.ready.wait()
        return stream

    async def leave_room(self, room_id: int, listener: HubListener) -> None:
        stream = self.rooms.get(room_id)
        if stream is None:
            return
        stream.listeners.discard(listener)
        if not stream.listeners and not self.group_listeners.get(room_group(room_id)):
            stream.stop()
            del self.rooms[room_id]
            await self._discard_group(room_group(room_id))

    async def add_group_listener(self, group: str, listener: Any) -> None:
        """Any other local subscriber of a group (presence sockets): gets `hub_event(event)` calls."""
        await self.ensure_started()
        self.group_listeners.setdefault(group, set()).add(listener)
        await self._add_group(group)

    async def remove_group_listener(self, group: str, listener: Any) -> None:
        listeners = self.group_listeners.get(group)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self.group_listeners[group]
            in_use_by_room = group.startswith("room.") and int(group.split(".", 1)[1]) in self.rooms
            if not in_use_by_room:
                await self._discard_group(group)

    # --- dispatch -----------------------------------------------------------------------------------
    def dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "room.message":
            stream = self.rooms.get(int(event["room_id"]))
            if stream is not None:
                stream.on_message(event["message"])
        elif kind == "room.frame":
            stream = self.rooms.get(int(event["room_id"]))
            if stream is not None:
                text = encode(event["frame"])
                exclude = event.get("exclude_user_id")
                for listener in tuple(stream.listeners):
                    if listener.user_id != exclude:
                        listener.deliver_frame(text)
        elif kind == "room.member_removed":
            stream = self.rooms.get(int(event["room_id"]))
            if stream is not None:
                for listener in tuple(stream.listeners):
                    if listener.user_id == event["user_id"]:
                        listener.close_with(4403, "no longer a member of this room")
        elif kind == "room.deleted":
            stream = self.rooms.get(int(event["room_id"]))
            if stream is not None:
                for listener in tuple(stream.listeners):
                    listener.close_with(4404, "the room was deleted")
        elif kind == "user.revoked":
            jti = event.get("jti")
            for listener in tuple(self.users.get(int(event["user_id"]), ())):
                if jti is None or listener.auth_jti == jti:
                    listener.close_with(4401, "token revoked")
        for listener in tuple(self.group_listeners.get(self._group_of(event), ())):
            try:
                listener.hub_event(event)
            except Exception:  # noqa: BLE001
                logger.exception("group listener failed on %r", kind)

    @staticmethod
    def _group_of(event: dict[str, Any]) -> str:
        if "group" in event:
            return str(event["group"])
        if "room_id" in event:
            return room_group(int(event["room_id"]))
        return ""

    def allow_typing(self, room_id: int, user_id: int, min_interval: float) -> bool:
        """One typing frame per user and room per interval, whichever tab it comes from."""
        now = time.monotonic()
        key = (room_id, user_id)
        if now - self.last_typing.get(key, 0.0) < min_interval:
            return False
        if len(self.last_typing) > 10_000:
            self.last_typing = {k: t for k, t in self.last_typing.items() if now - t < min_interval}
        self.last_typing[key] = now
        return True

    def local_socket_count(self) -> int:
        return sum(len(listeners) for listeners in self.users.values())

    def listeners_of(self, user_ids: Iterable[int]) -> list[HubListener]:
        return [listener for uid in user_ids for listener in self.users.get(uid, ())]


_hub: Hub | None = None


def get_hub() -> Hub:
    """The process's hub, created on first use inside the serving event loop."""
    global _hub
    if _hub is None:
        _hub = Hub()
    return _hub


def reset_hub_for_tests() -> None:
    global _hub
    if _hub is not None:
        for task in _hub._tasks:
            task.cancel()
    _hub = None
