"""The presence socket /ws/rooms/{id}/presence/: members only; a snapshot, then every change.

Sockets have no channel of their own. Per process and room, one RoomPresenceFeed is the hub's listener of
the `presence.<room>` group and serves every local presence socket of the room.

Why the feed re-reads instead of forwarding what it receives: changes of one user come from different
processes (a page reload closes a socket on one process and opens one on another), each publishing the
state it read right after its own change, and those publishes can arrive in either order. A frame built
from what arrived last could then be stale for good. The feed treats an event as "this user changed",
waits a moment to coalesce a burst, and reads the users' current state once for all its sockets. Every
change is followed by an event, and every event by a read, so what a client shows converges on the truth.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from django.db import DatabaseError

from realtime import frames as socket_frames
from realtime.frames import encode
from realtime.sockets import SocketState, in_worker_thread
from rooms.sockets import RoomMemberSocket

from . import services
from .frames import changed_frame
from .tracker import get_tracker

logger = logging.getLogger(__name__)

COALESCE_SECONDS = 0.05

snapshot_async = in_worker_thread(services.snapshot_frame)
participants_of_async = in_worker_thread(services.participants_of)


class RoomPresenceFeed:
    """The local fan-out of one room's presence changes: one store read per burst, one encode per frame."""

    def __init__(self, room_id: int):
        self.room_id = room_id
        self.group = services.presence_group(room_id)
        self.sockets: set[PresenceConsumer] = set()
        self.changed: dict[int, dict[str, Any]] = {}  # user id -> the participant as published
        self._refreshing: asyncio.Task[None] | None = None

    def hub_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "presence.room_deleted":
            for sock in tuple(self.sockets):
                sock.close_with(socket_frames.CLOSE_NOT_FOUND, "the room was deleted")
        elif kind == "presence.changed":
            for participant in services.event_participants(event):
                self.changed[int(participant["user"]["id"])] = participant
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        await asyncio.sleep(COALESCE_SECONDS)
        while self.changed:
            published, self.changed = self.changed, {}
            try:
                fresh = await participants_of_async(self.room_id, list(published))
                payloads = [p.as_frame_dict() for p in fresh.values()]
            except Exception:  # noqa: BLE001 - the database is away: what was published is the best we have
                logger.exception("presence re-read of room %s failed; forwarding the published state", self.room_id)
                payloads = list(published.values())
            for payload in payloads:
                text = encode(changed_frame(payload))
                for sock in tuple(self.sockets):
                    sock.deliver_participant(payload, text)


_feeds: dict[int, RoomPresenceFeed] = {}


class PresenceConsumer(RoomMemberSocket):
    kind = "presence"
    receives_user_frames = False  # a presence feed carries presence only

    async def connect(self) -> None:
        self.init_socket()
        self.feed: RoomPresenceFeed | None = None
        # Frames that arrive while the snapshot is read wait here (while SYNCING).
        self.early: list[tuple[dict[str, Any], str]] = []
        if not await self.authorize():
            return
        assert self.room_id is not None
        try:
            # Registered like a chat socket: logout, revocation, expiry and the re-checks close it too.
            await self.accept_socket(SocketState.SYNCING)
            await self.register()
            await self._join_feed()
        except Exception:  # noqa: BLE001 - channel layer away: the client retries
            logger.exception("could not register the presence socket")
            self.close_with(socket_frames.CLOSE_TRY_AGAIN, "temporarily unavailable; reconnect shortly")
            return
        get_tracker().ensure_running()  # this process reaps too, so watchers see dead processes' sockets go
        try:
            snapshot = await snapshot_async(self.room_id)
        except DatabaseError:
            logger.exception("presence snapshot failed")
            self.close_with(socket_frames.CLOSE_INTERNAL, "presence unavailable; reconnect shortly")
            return
        self.push_frame(snapshot)
        # Each change held meanwhile was read after the change it follows: it goes after the snapshot.
        self.move_to(SocketState.LIVE)

    def on_state_change(self) -> None:
        if self.state is SocketState.LIVE:
            early, self.early = self.early, []
            for payload, text in early:
                self.deliver_participant(payload, text)

    async def _join_feed(self) -> None:
        feed = _feeds.get(self.room_id)
        if feed is None:
            feed = _feeds[self.room_id] = RoomPresenceFeed(self.room_id)
        feed.sockets.add(self)
        self.feed = feed
        await self.hub.add_group_listener(feed.group, feed)

    def deliver_participant(self, payload: dict[str, Any], text: str) -> None:
        if self.state is SocketState.SYNCING:
            self.early.append((payload, text))
            return
        self.push(text)
        if not payload.get("member", True) and int(payload["user"]["id"]) == self.user_id:
            self.close_with(socket_frames.CLOSE_FORBIDDEN, "no longer a member of this room")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Only pings: they keep the socket from idling out."""
        if self.closing:
            return
        self.last_activity = time.monotonic()
        try:
            frame = json.loads(text_data or "")
        except (ValueError, RecursionError):
            frame = None
        if isinstance(frame, dict) and frame.get("type") == "ping":
            self.push_frame(socket_frames.pong_frame())
        else:
            self.push_frame(
                socket_frames.error_frame("unknown_type", 'The presence socket only takes {"type": "ping"}.')
            )

    async def disconnect(self, code: int) -> None:
        await self.unregister()
        feed, self.feed = getattr(self, "feed", None), None
        if feed is None:
            return
        feed.sockets.discard(self)
        if not feed.sockets and _feeds.get(self.room_id) is feed:
            del _feeds[self.room_id]
            await self.hub.remove_group_listener(feed.group, feed)
