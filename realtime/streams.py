"""Each room's live stream in this process: gapless, in seq order, delivered once to every local socket.

Publishes from different processes can arrive out of order, and a publish can be lost (a process dying
between commit and publish, a Redis blip). Events ahead of the next expected seq wait briefly, then the
missing seqs are read from the database through the `StreamSource` the stream is given; a periodic sweep
compares each stream with the database, which covers a lost publish that no later event reveals.

A stream knows seqs and frames, not what they mean: the app that writes a room's events (messaging)
supplies the source that reads them back.

Fan-out is written in slices of FANOUT_SLICE sockets: a big room's burst yields to the event loop between
slices, so other rooms, acks and pings go through meanwhile. One fan-out per stream at a time, in seq order,
keeps every socket's events in order; a small room's event is written at once, without a task.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from typing import Any, Protocol

from .frames import encode

logger = logging.getLogger(__name__)

GAP_WAIT_SECONDS = 0.25
# A room seen behind the database at two sweeps in a row is caught up from it.
CATCH_UP_SECONDS = 5.0
FANOUT_SLICE = 256


class StreamSource(Protocol):
    """Where a room's committed events are read back from (all calls run off the event loop)."""

    async def last_seq(self, room_id: int) -> int | None: ...
    async def last_seqs(self, room_ids: list[int]) -> dict[int, int]: ...
    async def frames_between(self, room_id: int, after_seq: int, up_to_seq: int) -> list[tuple[Any, ...]]:
        """The events to show with after_seq < seq <= up_to_seq, ascending, as (seq, frame) or
        (seq, frame, visible_seq); a seq left out is skipped."""
        ...


class StreamListener(Protocol):
    user_id: int

    def deliver_event(self, seq: int, text: str, visible_seq: int | None = None) -> None:
        """`visible_seq` (given only when set): the event concerns that older seq; a listener whose reader
        may not see it drops the event."""
        ...

    def deliver_frame(self, text: str) -> None: ...
    def close_with(self, code: int, reason: str) -> None: ...


class DeliveryCounters:
    """What the streams of this process handed out (read by realtime.metrics)."""

    events = 0  # room events put in seq order and handed to local sockets, once per event
    deliveries = 0  # event frames written to sockets, once per socket
    latency_observer: Any = None  # callable(seconds) from realtime.metrics


_waiter_numbers = itertools.count()  # tie-breaker in the waiters' heap: futures do not compare


class RoomStream:
    def __init__(self, source: StreamSource, room_id: int):
        self.source = source
        self.room_id = room_id
        self.listeners: set[StreamListener] = set()
        self.last_seq: int | None = None  # None until the starting point is read; then the last seq in order
        self.delivered_seq: int | None = None  # the last seq handed to every local socket
        self.outgoing: deque[tuple[int, str, int | None]] = deque()  # in order, waiting for the fan-out
        self._fanout_task: asyncio.Task[None] | None = None
        # seq -> (frame, sent_at, visible_seq)
        self.pending: dict[int, tuple[dict[str, Any], float | None, int | None]] = {}
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gap_task: asyncio.Task[None] | None = None
        self.behind_at: int | None = None  # last_seq when the catch-up sweep last saw this stream behind
        self.known_last_seq = 0  # a seq the database is known to have committed
        self.delivery_waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # heap of (seq, n, future)

    # --- start ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Read the starting point; every waiter on `started` is woken, or failed with the same error."""
        try:
            last_seq = await self.source.last_seq(self.room_id)
        except BaseException as exc:
            self.fail(exc)
            raise
        self.last_seq = last_seq if last_seq is not None else 0
        self.delivered_seq = self.last_seq
        for seq in [s for s in self.pending if s <= self.last_seq]:
            del self.pending[seq]
        if not self.started.done():
            self.started.set_result(None)
        self._drain()

    def fail(self, exc: BaseException) -> None:
        if not self.started.done():
            self.started.set_exception(exc)
            self.started.exception()  # retrieved: each waiter re-raises it

    # --- events ---------------------------------------------------------------------------------------
    def on_event(
        self, seq: int, frame: dict[str, Any], sent_at: float | None = None, visible_seq: int | None = None
    ) -> None:
        if self.last_seq is not None and seq <= self.last_seq:
            return  # already delivered (a gap fill got it first) or older than this stream
        self.pending[seq] = (frame, sent_at, visible_seq)
        if self.last_seq is not None:
            self._drain()

    def _behind(self) -> bool:
        return bool(self.pending) or (self.last_seq is not None and self.known_last_seq > self.last_seq)

    def _drain(self) -> None:
        self._drain_ready()
        if self.pending and (self._gap_task is None or self._gap_task.done()):
            self._gap_task = asyncio.ensure_future(self._fill_gap())

    def _drain_ready(self) -> None:
        assert self.last_seq is not None
        while self.last_seq + 1 in self.pending:
            frame, sent_at, visible_seq = self.pending.pop(self.last_seq + 1)
            self.last_seq += 1
            self._deliver(self.last_seq, frame, sent_at, visible_seq)

    def _deliver(self, seq: int, frame: dict[str, Any], sent_at: float | None, visible_seq: int | None = None) -> None:
        text = encode(frame)
        DeliveryCounters.events += 1
        if sent_at is not None and DeliveryCounters.latency_observer is not None:
            DeliveryCounters.latency_observer(max(0.0, time.time() - sent_at))
        if not self.outgoing and len(self.listeners) <= FANOUT_SLICE and not self._fanning_out():
            self._write(seq, text, visible_seq, tuple(self.listeners))
            self._delivered(seq)
            return
        self.outgoing.append((seq, text, visible_seq))
        if not self._fanning_out():
            self._fanout_task = asyncio.ensure_future(self._fan_out())

    def _fanning_out(self) -> bool:
        return self._fanout_task is not None and not self._fanout_task.done()

    @staticmethod
    def _write(seq: int, text: str, visible_seq: int | None, listeners: tuple[StreamListener, ...]) -> None:
        DeliveryCounters.deliveries += len(listeners)
        if visible_seq is None:
            for listener in listeners:
                listener.deliver_event(seq, text)
        else:
            for listener in listeners:
                listener.deliver_event(seq, text, visible_seq)

    async def _fan_out(self) -> None:
        """Write queued events in order, FANOUT_SLICE sockets at a time, yielding between slices."""
        while self.outgoing:
            seq, text, visible_seq = self.outgoing.popleft()
            listeners = tuple(self.listeners)
            for start in range(0, len(listeners), FANOUT_SLICE):
                if start:
                    await asyncio.sleep(0)
                self._write(seq, text, visible_seq, listeners[start : start + FANOUT_SLICE])
            self._delivered(seq)

    def _delivered(self, seq: int) -> None:
        self.delivered_seq = seq
        while self.delivery_waiters and self.delivery_waiters[0][0] <= seq:
            _seq, _n, waiter = heapq.heappop(self.delivery_waiters)
            if not waiter.done():
                waiter.set_result(None)

    def deliver_frame(self, text: str, exclude_user_id: int | None = None) -> None:
        """An ephemeral frame (typing, read): not part of the seq order."""
        for listener in tuple(self.listeners):
            if listener.user_id != exclude_user_id:
                listener.deliver_frame(text)

    def close_sockets(self, code: int, reason: str, user_id: int | None = None) -> None:
        for listener in tuple(self.listeners):
            if user_id is None or listener.user_id == user_id:
                listener.close_with(code, reason)

    # --- pacing ---------------------------------------------------------------------------------------
    def is_behind(self, seq: int) -> bool:
        """True while events before `seq` are still undelivered here: the fan-out lags the senders."""
        return self.delivered_seq is None or seq - self.delivered_seq > 1

    async def wait_delivered(self, seq: int, timeout: float) -> None:
        """Return once this process has handed `seq` to its local sockets, or after `timeout`.

        A sender's ack waits for this while the stream is behind (`is_behind`): the ack then paces a
        sender to the speed at which this process fans its events out, instead of queueing without bound.
        """
        if self.delivered_seq is not None and seq <= self.delivered_seq:
            return
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self.delivery_waiters, (seq, next(_waiter_numbers), waiter))
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            pass  # a lost publish is filled later by the catch-up sweep; the ack must not wait for it

    # --- gaps -----------------------------------------------------------------------------------------
    async def _fill_gap(self) -> None:
        await asyncio.sleep(GAP_WAIT_SECONDS)
        while self._behind() and self.last_seq is not None and (self.last_seq + 1) not in self.pending:
            # Everything up to `up_to` is committed (seqs commit in order: each is taken under the room row's
            # lock; a later one was published, or the database reported it), so one read settles the range.
            up_to = min(self.pending) - 1 if self.pending else self.known_last_seq
            try:
                missing = await self.source.frames_between(self.room_id, self.last_seq, up_to)
            except Exception:  # noqa: BLE001 - database away: try again shortly
                logger.warning("gap fill of room %s failed; retrying in 1 s", self.room_id)
                await asyncio.sleep(1.0)
                continue
            for seq, frame, *visible in missing:
                if seq > self.last_seq:
                    self.pending.setdefault(seq, (frame, None, visible[0] if visible else None))
            self._settle(up_to)
        self._drain_ready()

    def _settle(self, up_to: int) -> None:
        """Deliver what is pending up to `up_to` in order and move past the rest of the range: a seq the
        source did not return has nothing to show (a change superseded by a later change of the same
        message, or a row gone with its room)."""
        assert self.last_seq is not None
        for seq in sorted(s for s in self.pending if s <= up_to):
            frame, sent_at, visible_seq = self.pending.pop(seq)
            self.last_seq = seq
            self._deliver(seq, frame, sent_at, visible_seq)
        if up_to > self.last_seq:
            self.last_seq = up_to
            if not self.outgoing and not self._fanning_out():
                self._delivered(up_to)
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
        for task in (self._gap_task, self._fanout_task):
            if task is not None:
                task.cancel()


class RoomStreams:
    """The streams of this process, one per room with at least one local socket."""

    def __init__(self, source: StreamSource):
        self.source = source
        self.by_room: dict[int, RoomStream] = {}

    def get(self, room_id: int) -> RoomStream | None:
        return self.by_room.get(room_id)

    def open(self, room_id: int) -> tuple[RoomStream, bool]:
        """The room's stream, and whether it is new (its opener must start it, or fail it)."""
        stream = self.by_room.get(room_id)
        if stream is not None:
            return stream, False
        stream = self.by_room[room_id] = RoomStream(self.source, room_id)
        return stream, True

    def drop(self, stream: RoomStream) -> None:
        stream.stop()
        if self.by_room.get(stream.room_id) is stream:
            del self.by_room[stream.room_id]

    async def catch_up_loop(self) -> None:
        while True:
            await asyncio.sleep(CATCH_UP_SECONDS)
            room_ids = [room_id for room_id, stream in self.by_room.items() if stream.last_seq is not None]
            if not room_ids:
                continue
            try:
                database_seqs = await self.source.last_seqs(room_ids)
            except Exception:  # noqa: BLE001 - database away: the next sweep tries again
                logger.warning("catch-up sweep could not read the rooms; retrying")
                continue
            for room_id, last_seq in database_seqs.items():
                stream = self.by_room.get(room_id)
                if stream is not None:
                    stream.catch_up_to(last_seq)
