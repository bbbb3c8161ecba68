"""The chat socket /ws/rooms/{id}/: members only; parse frames, call the services, send.

Order per socket: a socket joins the room's live stream before it replays history, holds live frames back
while it is SYNCING (membership confirmed once more after registering, or a replay running), and while one
of its own sends waits for its ack (so a sender sees its ack before its own message); then it writes what
it held in seq order, dropping seqs it already sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.db import DatabaseError

from core.domain import DomainError
from realtime import frames as socket_frames
from realtime.publish import apublish_room_frame
from realtime.signals import room_socket_closed, room_socket_opened
from realtime.sockets import SocketState, in_worker_thread
from rooms.services import NotRoomMember, RoomNotFound
from rooms.sockets import RoomMemberSocket

from . import frames
from .limits import MESSAGE_SENDS
from .services import (
    delete_message,
    edit_message,
    mark_read,
    replay_page,
    room_last_seq,
    send_message,
    set_reaction,
)

logger = logging.getLogger(__name__)

TYPING_MIN_INTERVAL = 2.0
RESUME_MIN_INTERVAL = 1.0
ACK_PACING_TIMEOUT = 1.0  # the longest an ack waits for this process's fan-out of its message
FLOOD_CLOSE_AFTER = 10  # refused frames in a row before the socket is closed with 4429

def _send_within_limits(**kwargs: Any) -> Any:
    """The per-user send limit that REST applies too (messaging.limits), counted across all of the user's
    sockets and processes, then the send: one worker-thread call."""
    MESSAGE_SENDS.hit(kwargs["sender"].pk)
    return send_message(**kwargs)


def _change_within_limits(change: Any, **kwargs: Any) -> Any:
    """Edits, deletions and reactions count against the same per-user write limit as sends."""
    MESSAGE_SENDS.hit(kwargs["actor"].pk)
    return change(**kwargs)


send_message_async = in_worker_thread(_send_within_limits)
change_message_async = in_worker_thread(_change_within_limits)
replay_page_async = in_worker_thread(replay_page)
room_last_seq_async = in_worker_thread(room_last_seq)
mark_read_async = in_worker_thread(mark_read)


class TypingThrottle:
    """One typing frame per user and room per interval in this process, whichever tab it comes from."""

    def __init__(self, min_interval: float):
        self.min_interval = min_interval
        self.last: dict[tuple[int, int], float] = {}

    def allow(self, room_id: int, user_id: int) -> bool:
        now = time.monotonic()
        key = (room_id, user_id)
        if now - self.last.get(key, float("-inf")) < self.min_interval:
            return False
        if len(self.last) > 10_000:
            self.last = {k: t for k, t in self.last.items() if now - t < self.min_interval}
        self.last[key] = now
        return True

    def reset(self, room_id: int, user_id: int) -> None:
        """A sent message ends a typing burst: the next keystroke (a quick reply) is news again."""
        self.last.pop((room_id, user_id), None)


typing_throttle = TypingThrottle(TYPING_MIN_INTERVAL)


class ChatConsumer(RoomMemberSocket):
    kind = "chat"
    present = False  # counted by presence (room_socket_opened sent)

    async def connect(self) -> None:
        self.init_socket()
        self.held: list[tuple[int, str]] = []  # live frames held back, in arrival order
        self.acks_pending = 0
        self.last_sent_seq = 0
        self.last_resume_at = float("-inf")
        self.tokens = float(settings.WS_MESSAGES_BURST)
        self.tokens_at = time.monotonic()
        self.refused_in_a_row = 0
        self.present = False
        if not await self.authorize():
            return
        assert self.room_id is not None
        after_seq = self._after_seq_from_query()
        try:
            # Without after_seq the client gets what is sent once it is open: the room's last seq before the
            # accept is where that starts. The room's stream may start later (its first socket reads the
            # starting point after joining the group), and a message committed in between was neither live
            # nor replayed: it reached the socket only with the next message of the room.
            opened_after = await room_last_seq_async(self.room_id) if after_seq is None else None
            await self.accept_socket(SocketState.SYNCING)
            await self.hub.join_room(self.room_id, self)
            await self.register()
            # Confirmed once more after registering: a leave committed between the first check and the
            # registration sent its close to nobody.
            refusal = await self.check_access()
        except Exception:  # noqa: BLE001 - channel layer or database away: the client retries and resumes
            logger.exception("could not register the socket")
            self.close_with(socket_frames.CLOSE_TRY_AGAIN, "temporarily unavailable; reconnect and resume")
            return
        if refusal is not None:
            self.close_with(*refusal)
            return
        self.present = True
        try:
            await room_socket_opened.asend(
                sender=ChatConsumer, room_id=self.room_id, user_id=self.user_id, connection_id=self.connection_id
            )
        except Exception:  # noqa: BLE001 - presence trouble must never cost the chat its socket
            logger.exception("socket-opened listeners failed")
        if after_seq is None:
            assert opened_after is not None
            await self._replay(opened_after, announce=False)
        else:
            await self._replay(after_seq)

    def _after_seq_from_query(self) -> int | None:
        query = parse_qs((self.scope.get("query_string") or b"").decode("latin-1"))
        values = query.get("after_seq")
        if not values:
            return None
        try:
            return max(0, int(values[0]))
        except ValueError:
            return 0

    async def disconnect(self, code: int) -> None:
        await self.unregister()
        if self.room_id is not None:
            await self.hub.leave_room(self.room_id, self)
        if self.present:
            self.present = False
            try:
                await room_socket_closed.asend(
                    sender=ChatConsumer, room_id=self.room_id, user_id=self.user_id, connection_id=self.connection_id
                )
            except Exception:  # noqa: BLE001
                logger.exception("socket-closed listeners failed")

    # --- live delivery (called by the hub) -----------------------------------------------------------
    def _holding(self) -> bool:
        return self.state is SocketState.SYNCING or self.acks_pending > 0

    def deliver_event(self, seq: int, text: str, visible_seq: int | None = None) -> None:
        if visible_seq is not None and visible_seq <= self.history_floor:
            return  # a change of a message from before this member's join, in a room that hides it
        if self._holding():
            self.held.append((seq, text))
        elif seq > self.last_sent_seq:
            self.last_sent_seq = seq
            self.push(text)

    def on_state_change(self) -> None:
        self._release_held()

    def _release_held(self) -> None:
        if self.closing:
            self.held.clear()
            return
        if self._holding():
            return
        held, self.held = self.held, []
        for seq, text in held:
            if seq > self.last_sent_seq:
                self.last_sent_seq = seq
                self.push(text)

    async def _replay(self, after_seq: int, *, announce: bool = True) -> None:
        """Replay seq > after_seq in pages, then `synced` (unless `announce` is false: a connect without
        after_seq, whose catch-up the client did not ask for), then what arrived live meanwhile (deduped by seq)."""
        assert self.room_id is not None
        self.move_to(SocketState.SYNCING)
        if announce:  # a resume the client asked for counts against its rate; a connect's catch-up does not
            self.last_resume_at = time.monotonic()
        cursor = after_seq
        page_size = settings.WS_REPLAY_PAGE_SIZE
        up_to_seq: int | None = None
        try:
            # The replay covers every seq up to the room's last_seq on the primary, read after this socket
            # joined the live stream: later seqs arrive live (held until `synced`). Pages may come from a
            # lagging replica; replay_page tops them up from the primary up to this bound.
            up_to_seq = await room_last_seq_async(self.room_id)
            # A client claiming a seq the room has not reached would otherwise drop live frames until the
            # room caught up with its claim. The bound is the room's committed last_seq, never this
            # process's stream: a stream behind what the client saw on another process (its publishes late
            # or lost) would replay seqs the client already has.
            cursor = after_seq = min(after_seq, up_to_seq)
            while not self.closing and cursor < up_to_seq:
                page = await replay_page_async(
                    room_id=self.room_id,
                    after_seq=cursor,
                    limit=page_size,
                    floor=self.history_floor,
                    up_to_seq=up_to_seq,
                )
                for seq, frame in page:
                    self.push_frame(frame)
                    cursor = seq
                if len(page) < page_size:
                    break
                # Let the socket drain before the next page, so a far-behind client cannot hog memory.
                while self.queued_frames() > page_size and not self.closing:
                    await asyncio.sleep(0.01)
        except DatabaseError:
            logger.exception("replay failed")
            stream = self.hub.streams.get(self.room_id)
            if up_to_seq is None and stream is not None and stream.last_seq is not None:
                cursor = min(cursor, stream.last_seq)  # no bound read: at least no claim past this stream
            self.push_frame(socket_frames.error_frame("unavailable", "History is unavailable; resume again shortly."))
        if self.closing:
            return
        self.last_sent_seq = cursor
        if announce:
            self.push_frame(frames.synced_frame(cursor))
        self.move_to(SocketState.LIVE)

    # --- frames from the client ----------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        self.last_activity = time.monotonic()
        if bytes_data is not None:
            if len(bytes_data) > settings.WS_MAX_FRAME_BYTES:
                self.close_with(socket_frames.CLOSE_TOO_BIG, "frame over 64 KiB")
            else:
                self.push_frame(socket_frames.error_frame("binary_not_supported", "Send JSON text frames."))
            return
        if text_data is None:
            return
        if len(text_data) > settings.WS_MAX_FRAME_BYTES // 4 and len(text_data.encode()) > settings.WS_MAX_FRAME_BYTES:
            self.close_with(socket_frames.CLOSE_TOO_BIG, "frame over 64 KiB")
            return
        if not self._take_token():
            return
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):
            self.push_frame(socket_frames.error_frame("invalid_json", "The frame is not valid JSON."))
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            self.push_frame(socket_frames.error_frame("invalid_frame", 'A frame is a JSON object with a "type".'))
            return
        kind = frame["type"]  # the shapes below are frames.SendFrame etc.; each handler checks its fields
        if kind == "send":
            await self.on_send(frame)  # type: ignore[arg-type]
        elif kind == "ping":
            self.push_frame(socket_frames.pong_frame())
        elif kind == "resume":
            await self.on_resume(frame)  # type: ignore[arg-type]
        elif kind == "read":
            await self.on_read(frame)  # type: ignore[arg-type]
        elif kind == "typing":
            await self.on_typing()
        elif kind == "edit":
            await self.on_change(edit_message, frame, body=frame.get("body"))
        elif kind == "delete":
            await self.on_change(delete_message, frame)
        elif kind == "react":
            await self.on_change(set_reaction, frame, emoji=frame.get("emoji"), on=frame.get("on"))
        else:
            self.push_frame(socket_frames.error_frame("unknown_type", f"Unknown frame type {kind[:40]!r}."))

    def _take_token(self) -> bool:
        """Per-socket token bucket: a burst, then WS_MESSAGES_PER_SECOND; a flood ends with 4429."""
        if not settings.RATE_LIMITS_ENABLED:
            return True
        now = time.monotonic()
        self.tokens = min(
            float(settings.WS_MESSAGES_BURST), self.tokens + (now - self.tokens_at) * settings.WS_MESSAGES_PER_SECOND
        )
        self.tokens_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.refused_in_a_row = 0
            return True
        self.refused_in_a_row += 1
        if self.refused_in_a_row >= FLOOD_CLOSE_AFTER:
            self.close_with(socket_frames.CLOSE_TOO_MANY, "too many messages")
        else:
            self.push_frame(socket_frames.error_frame("rate_limited", "Too many frames; slow down."))
        return False

    def _refuse_for_room(self, exc: Exception) -> bool:
        """Close for a membership or room that ended under the socket; True if it did."""
        if isinstance(exc, NotRoomMember):
            self.close_with(socket_frames.CLOSE_FORBIDDEN, "no longer a member of this room")
        elif isinstance(exc, RoomNotFound):
            self.close_with(socket_frames.CLOSE_NOT_FOUND, "the room was deleted")
        else:
            return False
        return True

    async def on_send(self, frame: frames.SendFrame) -> None:
        client_id = frame.get("client_id")
        echo_id = client_id if isinstance(client_id, str) and len(client_id) <= 64 else None
        self.acks_pending += 1  # our own message must not reach us before its ack
        try:
            result = await send_message_async(
                room_id=self.room_id,
                sender=self.user,
                client_id=client_id,
                body=frame.get("body"),
                reply_to=frame.get("reply_to"),
                attachments=frame.get("attachments"),
            )
        except DomainError as exc:
            if not self._refuse_for_room(exc):
                self.push_frame(socket_frames.error_frame(exc.code, exc.detail, client_id=echo_id))
        except DatabaseError:
            logger.exception("send failed on the database")
            self.push_frame(
                socket_frames.error_frame(
                    "unavailable", "The message was not stored; retry with the same client_id.", client_id=echo_id
                )
            )
        else:
            message = result.message
            stream = self.hub.streams.get(self.room_id)  # type: ignore[arg-type]
            if result.created and stream is not None and stream.is_behind(int(message["seq"])):
                await stream.wait_delivered(int(message["seq"]), ACK_PACING_TIMEOUT)
            self.push_frame(frames.ack_frame(message["client_id"], message["seq"], message["id"]))
            if result.created:
                typing_throttle.reset(self.room_id, self.user_id)  # type: ignore[arg-type]
        finally:
            self.acks_pending -= 1
            self._release_held()

    async def on_change(self, change: Any, frame: dict[str, Any], **fields: Any) -> None:
        """edit, delete, react: the change reaches every socket of the room (this one included) as a
        `message.updated` event in seq order; only a refusal is answered here, with the message's id."""
        message_id = frame.get("message_id")
        try:
            await change_message_async(change, room_id=self.room_id, message_id=message_id, actor=self.user, **fields)
        except DomainError as exc:
            if not self._refuse_for_room(exc):
                echo = message_id if isinstance(message_id, int) and not isinstance(message_id, bool) else None
                self.push_frame(socket_frames.error_frame(exc.code, exc.detail, message_id=echo))
        except DatabaseError:
            logger.exception("change failed on the database")
            self.push_frame(socket_frames.error_frame("unavailable", "Nothing was changed; try again."))

    async def on_resume(self, frame: frames.ResumeFrame) -> None:
        after_seq = frame.get("after_seq")
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            self.push_frame(socket_frames.error_frame("invalid_frame", "after_seq must be a non-negative integer."))
            return
        if time.monotonic() - self.last_resume_at < RESUME_MIN_INTERVAL:
            # Each resume may replay the whole history: a loop of them would cost the database, not the client.
            self.push_frame(socket_frames.error_frame("rate_limited", "At most one resume per second."))
            return
        refusal = await self.check_access()  # a member removed while its close event was lost reads nothing
        if refusal is not None:
            self.close_with(*refusal)
            return
        await self._replay(after_seq)

    async def on_read(self, frame: frames.ReadFrame) -> None:
        try:
            await mark_read_async(room_id=self.room_id, user=self.user, seq=frame.get("seq"))
        except DomainError as exc:
            if not self._refuse_for_room(exc):
                self.push_frame(socket_frames.error_frame(exc.code, exc.detail))
        except DatabaseError:
            self.push_frame(socket_frames.error_frame("unavailable", "Read position not stored; try again."))

    async def on_typing(self) -> None:
        assert self.room_id is not None
        if not typing_throttle.allow(self.room_id, self.user_id):
            return  # throttled silently, per user across their tabs: typing is a hint, not a message
        await apublish_room_frame(
            self.room_id, frames.typing_frame(self.user.as_public_dict()), exclude_user_id=self.user_id
        )
