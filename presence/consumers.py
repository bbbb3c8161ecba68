"""The presence socket /ws/rooms/{id}/presence/: members only; a snapshot, then every change.

It has no channel of its own: the process's hub delivers `presence.<room>` events to it (hub_event), and
closes it like a chat socket when its token is revoked, expires, or it idles (clients send pings).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from django.db import DatabaseError

from messaging import frames as chat_frames
from messaging.consumers import SocketBase, in_worker_thread

from . import services
from .frames import changed_frame
from .tracker import get_tracker

logger = logging.getLogger(__name__)

snapshot_async = in_worker_thread(services.snapshot_frame)
participant_async = in_worker_thread(services.participant)


class PresenceConsumer(SocketBase):
    async def connect(self) -> None:
        self._init_socket()
        self.room_id = int(self.scope["url_route"]["kwargs"]["room_id"])
        self.group = services.presence_group(self.room_id)
        self.subscribed = False
        # Changes that arrive while the snapshot is read wait here (None once the snapshot is sent).
        self.early: list[dict[str, Any]] | None = []
        if not await self.authorize_room(self.room_id):
            return
        await self.accept(self.scope.get("chattalk_subprotocol"))
        self.accepted = True
        await self.hub.add_user_listener(self)
        await self.hub.add_group_listener(self.group, self)
        self.subscribed = True
        get_tracker().ensure_running()  # this process reaps too, so watchers see dead processes' sockets go
        try:
            snapshot = await snapshot_async(self.room_id)
        except DatabaseError:
            logger.exception("presence snapshot failed")
            self.close_with(1011, "presence unavailable; reconnect shortly")
            return
        self.push_frame(snapshot)
        early, self.early = self.early, None
        # A change seen during the read may be older or newer than the snapshot: send each such user's state
        # as read now, which is at least as new as both.
        for user_id in dict.fromkeys(int(e["participant"]["user"]["id"]) for e in early):
            fresh = await participant_async(self.room_id, user_id)
            if fresh is not None:
                self._send_participant(fresh.as_frame_dict())

    def hub_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "presence.room_deleted":
            self.close_with(chat_frames.CLOSE_NOT_FOUND, "the room was deleted")
        elif kind == "presence.changed":
            if self.early is not None:
                self.early.append(event)
            else:
                self._send_participant(event["participant"])

    def _send_participant(self, participant: dict[str, Any]) -> None:
        self.push_frame(changed_frame(participant))
        if not participant.get("member", True) and int(participant["user"]["id"]) == self.user_id:
            self.close_with(chat_frames.CLOSE_FORBIDDEN, "no longer a member of this room")

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
            self.push_frame(chat_frames.pong_frame())
        else:
            self.push_frame(chat_frames.error_frame("unknown_type", 'The presence socket only takes {"type": "ping"}.'))

    async def disconnect(self, code: int) -> None:
        self.closing = True
        if getattr(self, "subscribed", False):
            self.subscribed = False
            await self.hub.remove_group_listener(self.group, self)
            await self.hub.remove_user_listener(self)
