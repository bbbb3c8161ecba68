"""This process's side of presence: its open chat sockets, and the one worker that mirrors them into the
store.

Why one worker per process: socket opens and closes, heartbeats and reaping all change the store, and
they must reach it in the order they happened here (a heartbeat must never re-create a socket that just
closed). A queue read by one task gives that order without locks, and the chat consumer only appends to a
dict and a queue: it never waits for MongoDB or the database, and nothing here can raise into it.

The heartbeat is a reconciliation, not a ping: it upserts every socket this process holds and removes the
records of its sockets that are gone. So when the store was away (presence degraded, opens and closes
skipped), the first heartbeat that succeeds re-registers what is still open and forgets what closed:
presence recovers by itself, and the logs say when it degrades and when it recovers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.db import DatabaseError

from . import services
from .backends import ConnectionRecord, PresenceUnavailable

logger = logging.getLogger(__name__)

RETRY_SECONDS_WHILE_DEGRADED = 1.0
SOCKET_OPS = frozenset({"open", "close"})
BATCH_LIMIT = 500
RECONCILE_EVERY_BEATS = 10


def _in_worker_thread(func: Callable[..., Any]) -> Callable[..., Any]:
    """Blocking store and ORM work runs off the event loop, with Django's connection hygiene."""
    return DatabaseSyncToAsync(func, thread_sensitive=False)


_apply_socket_changes = _in_worker_thread(services.apply_socket_changes)
_sync = _in_worker_thread(services.sync_process)
_reap = _in_worker_thread(services.reap_stale_connections)


class PresenceTracker:
    def __init__(self) -> None:
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.open: dict[str, ConnectionRecord] = {}
        self.closed_while_degraded: dict[str, datetime] = {}  # connection id -> when it closed
        self.degraded = False
        self.degraded_since: float | None = None
        self.beats = 0
        self._queue: asyncio.Queue[tuple[Any, ...]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- called from the event loop by receivers and presence sockets; never blocks, never raises ---------
    def ensure_running(self) -> None:
        """Start the worker and the heartbeat on first use in this event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        self._queue = asyncio.Queue()
        self._tasks = [
            loop.create_task(self._work(), name="presence-worker"),
            loop.create_task(self._beat(), name="presence-heartbeat"),
        ]

    def socket_opened(self, room_id: int, user_id: int, connection_id: str) -> None:
        self.ensure_running()
        now = services.store_time()
        record = ConnectionRecord(connection_id, int(room_id), int(user_id), self.process_id, now, now)
        self.open[connection_id] = record
        self._enqueue("open", record)

    def socket_closed(self, room_id: int, user_id: int, connection_id: str) -> asyncio.Future[None] | None:
        """Queue the removal; the returned future resolves once it is applied (or skipped)."""
        record = self.open.pop(connection_id, None)
        if record is None or self._queue is None:
            return None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue("close", record, services.store_time(), done)
        return done

    def _enqueue(self, *op: Any) -> None:
        assert self._queue is not None
        self._queue.put_nowait(op)

    # --- the worker -----------------------------------------------------------------------------------------
    async def _work(self) -> None:
        assert self._queue is not None
        held: tuple[Any, ...] | None = None
        while True:
            op = held or await self._queue.get()
            held = None
            # Socket opens and closes waiting in line are applied together: a burst costs a few round trips.
            batch = [op]
            if op[0] in SOCKET_OPS:
                while len(batch) < BATCH_LIMIT and not self._queue.empty():
                    following = self._queue.get_nowait()
                    if following[0] not in SOCKET_OPS:
                        held = following  # heartbeats and reaps keep their place in line
                        break
                    batch.append(following)
            try:
                await self._apply(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one failed change must not stop presence
                logger.exception("presence %s failed", op[0])
            finally:
                for applied in batch:
                    done = applied[-1]
                    if isinstance(done, asyncio.Future) and not done.done():
                        done.set_result(None)

    async def _apply(self, batch: list[tuple[Any, ...]]) -> None:
        kind = batch[0][0]
        closes = [(op[1], op[2]) for op in batch if op[0] == "close"]
        if self.degraded and kind != "sync":
            for record, at in closes:
                self.closed_while_degraded[record.connection_id] = at
            return  # the next successful heartbeat reconciles these
        try:
            if kind in SOCKET_OPS:
                changes = await _apply_socket_changes(opened=[op[1] for op in batch if op[0] == "open"], closed=closes)
            elif kind == "sync":
                # The snapshot is taken now, in queue order: everything opened or closed before is in it.
                closed_at = dict(self.closed_while_degraded)
                self.beats += 1
                changes = await _sync(
                    process_id=self.process_id,
                    open_connections=list(self.open.values()),
                    closed_at=closed_at,
                    # In full after an outage and every RECONCILE_EVERY_BEATS beats; a count check otherwise.
                    reconcile=self.degraded or self.beats % RECONCILE_EVERY_BEATS == 1,
                )
                for connection_id in closed_at:
                    self.closed_while_degraded.pop(connection_id, None)
                if self.degraded:
                    self._recovered()
            else:
                changes = await _reap()
        except (PresenceUnavailable, DatabaseError) as exc:
            for record, at in closes:
                self.closed_while_degraded[record.connection_id] = at
            self._degrade(exc)
            return
        # One event per room, each changed user once, with their state after the whole batch.
        await services.apublish_changes(changes)

    def _degrade(self, exc: Exception) -> None:
        if not self.degraded:
            self.degraded = True
            self.degraded_since = time.monotonic()
            logger.warning(
                "presence degraded: the presence store is unavailable (%s); chat continues, and open sockets "
                "will be re-registered when it answers",
                exc,
            )

    def _recovered(self) -> None:
        away = time.monotonic() - (self.degraded_since or time.monotonic())
        self.degraded = False
        self.degraded_since = None
        logger.warning(
            "presence recovered after %.1f s: %d open sockets of this process re-registered", away, len(self.open)
        )

    async def _beat(self) -> None:
        while True:
            wait = RETRY_SECONDS_WHILE_DEGRADED if self.degraded else settings.PRESENCE_HEARTBEAT_SECONDS
            await asyncio.sleep(wait)
            if self._queue is not None and self._queue.qsize() < 2 * max(1, len(self.open)) + 100:
                self._enqueue("sync")
                self._enqueue("reap")


_tracker: PresenceTracker | None = None


def get_tracker() -> PresenceTracker:
    global _tracker
    if _tracker is None:
        _tracker = PresenceTracker()
    return _tracker


def current_tracker() -> PresenceTracker | None:
    """The tracker if this process has one (for /metrics: none is made just to be measured)."""
    return _tracker
