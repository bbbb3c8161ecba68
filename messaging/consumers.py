"""The chat socket /ws/rooms/{id}/: authenticate, check membership, parse frames, call the services, send.

Every frame to the client goes through one ordered outbox per socket (`_push`), written by one writer at a
time, so acks, replays, live frames and errors can never overtake each other, and a slow client never
blocks the hub: past OUTBOX_LIMIT queued frames the socket is closed with 1013 and the client resumes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import DatabaseSyncToAsync
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError

from accounts.ws_auth import UNAVAILABLE
from chattalk_project.domain import DomainError
from chattalk_project.request_id import current_request_id
from rooms.services import NotRoomMember, RoomNotFound, require_member

from . import frames
from .fanout import apublish_room_frame
from .hub import encode, get_hub
from .services import mark_read, replay_page, send_message
from .signals import chat_socket_closed, chat_socket_opened

logger = logging.getLogger(__name__)

OUTBOX_LIMIT = 5000
TYPING_MIN_INTERVAL = 2.0
RESUME_MIN_INTERVAL = 1.0
ACK_PACING_TIMEOUT = 1.0  # the longest an ack waits for this process's fan-out of its message
FLOOD_CLOSE_AFTER = 10  # refused frames in a row before the socket is closed with 4429


def in_worker_thread(func: Any) -> Any:
    """Run ORM work on the worker pool (not the single thread-sensitive thread): sends of many sockets run
    side by side, each thread with its own persistent database connection."""
    return DatabaseSyncToAsync(func, thread_sensitive=False)


def _room_access(room_id: int, user: Any) -> str:
    try:
        require_member(room_id, user)
    except RoomNotFound:
        return "not_found"
    except NotRoomMember:
        return "not_member"
    return "ok"


room_access = in_worker_thread(_room_access)
send_message_async = in_worker_thread(send_message)
replay_page_async = in_worker_thread(replay_page)
mark_read_async = in_worker_thread(mark_read)


class SocketBase(AsyncWebsocketConsumer):
    """What chat and presence sockets share: auth outcome, accept-then-close, ordered sends, the hub."""

    # The hub is the only channel-layer reader of the process; sockets have no channel of their own.
    channel_layer_alias = None

    user_id: int = 0
    auth_jti: str | None = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes old DB connections around every frame (a thread hop each); our ORM calls run in
        # worker threads that do that themselves, so the event loop does not pay for it per frame.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    def _init_socket(self) -> None:
        self.connection_id = uuid.uuid4().hex
        self.closing = False
        self.accepted = False
        self._out: deque[str] = deque()
        self._writing = False
        user = self.scope.get("user")
        self.user = user
        self.user_id = int(user.pk) if user is not None and user.is_authenticated else 0
        auth = self.scope.get("socket_auth")
        self.auth_jti = getattr(auth, "jti", None)
        self.auth_expires_at = getattr(auth, "expires_at", None)
        self.auth_issued_at = getattr(auth, "issued_at", None)
        self.auth_session_key = getattr(auth, "session_key", None)
        self.auth_generation = getattr(auth, "generation", None)
        self.auth_family = getattr(auth, "family", None)
        self.last_activity = time.monotonic()
        self.hub = get_hub()
        current_request_id.set(self.connection_id[:12])

    async def accept_then_close(self, code: int, reason: str) -> None:
        """The contract's refusal: accept first, so that the client sees the close code."""
        logger.info("socket refused with %s: %s", code, reason)
        self.closing = True
        await self.accept(self.scope.get("chattalk_subprotocol"))
        await self.close(code=code, reason=reason)

    async def authorize_room(self, room_id: int) -> bool:
        """Refuse with 4401/4404/4403/4429 as the contract says; True if the socket may open."""
        if not self.user_id:
            error = getattr(self.scope.get("socket_auth"), "error", None)
            if error == UNAVAILABLE:
                await self.accept_then_close(frames.CLOSE_TRY_AGAIN, "authentication unavailable; retry shortly")
            else:
                await self.accept_then_close(frames.CLOSE_NOT_AUTHENTICATED, error or "login")
            return False
        access = await room_access(room_id, self.user)
        if access == "not_found":
            await self.accept_then_close(frames.CLOSE_NOT_FOUND, "room not found")
            return False
        if access == "not_member":
            await self.accept_then_close(frames.CLOSE_FORBIDDEN, "not a member of this room")
            return False
        if len(self.hub.users.get(self.user_id, ())) >= settings.WS_MAX_SOCKETS_PER_USER:
            await self.accept_then_close(frames.CLOSE_TOO_MANY, "too many sockets for this user")
            return False
        return True

    # --- ordered output -----------------------------------------------------------------------------
    def _push(self, text: str) -> None:
        if self.closing:
            return
        if not self._writing and not self._out:
            self._send_now(text)
            return
        self._out.append(text)
        if len(self._out) > OUTBOX_LIMIT:
            self.close_with(frames.CLOSE_TRY_AGAIN, "client too slow; resume from your last seq")
            return
        if not self._writing:
            self._writing = True
            asyncio.ensure_future(self._write_loop(None, None))

    def _send_now(self, text: str) -> None:
        """Write one frame without a task when nothing is queued before it.

        uvicorn's send finishes without suspending unless the peer's transport is paused (flow control),
        so the coroutine is driven by hand: one step normally completes it. A task per socket per message
        was about a quarter of the server's CPU in a 1,000-member fan-out. If the send does suspend, a
        writer task finishes it, and frames pushed meanwhile queue behind it, in order.
        """
        coro = self.base_send({"type": "websocket.send", "text": text})
        try:
            awaited = coro.send(None)
        except StopIteration:
            return
        except Exception:  # noqa: BLE001 - the peer went away; disconnect() cleans up
            return
        self._writing = True
        asyncio.ensure_future(self._write_loop(coro, awaited))

    async def _write_loop(self, suspended: Any, awaited: Any) -> None:
        """Finish a send that suspended (if any), then write what queued up, one frame at a time."""
        try:
            while suspended is not None:
                if awaited is None:
                    await asyncio.sleep(0)  # a bare yield: just let the loop run once
                else:
                    await asyncio.wait([awaited])  # the future the send waits on (the transport drained)
                try:
                    awaited = suspended.send(None)
                except StopIteration:
                    suspended = None
            while self._out and not self.closing:
                await self.base_send({"type": "websocket.send", "text": self._out.popleft()})
        except Exception:  # noqa: BLE001 - the peer went away; disconnect() cleans up
            self._out.clear()
        finally:
            if suspended is not None:
                suspended.close()
            self._writing = False

    def push_frame(self, frame: dict[str, Any]) -> None:
        self._push(encode(frame))

    def deliver_frame(self, text: str) -> None:
        self._push(text)

    def close_with(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self._out.clear()
        logger.info("closing socket with %s: %s", code, reason)
        asyncio.ensure_future(self.close(code=code, reason=reason))

    def sweep(self, now: float) -> None:
        if self.closing:
            return
        if self.auth_expires_at is not None and time.time() >= self.auth_expires_at:
            self.close_with(frames.CLOSE_NOT_AUTHENTICATED, "token expired")
        elif now - self.last_activity > settings.WS_IDLE_SECONDS:
            self.close_with(frames.CLOSE_IDLE, "idle too long")

    def deliver_message(self, seq: int, text: str) -> None:  # presence sockets get no chat messages
        return None


class ChatConsumer(SocketBase):
    async def connect(self) -> None:
        self._init_socket()
        self.room_id = int(self.scope["url_route"]["kwargs"]["room_id"])
        self.registered = False
        self.opened = False
        self.replaying = False
        self.holding = False
        self.buffer: list[tuple[int, str]] = []
        self.last_sent_seq = 0
        self.last_resume_at = -RESUME_MIN_INTERVAL
        self.tokens = float(settings.WS_MESSAGES_BURST)
        self.tokens_at = time.monotonic()
        self.refused_in_a_row = 0
        if not await self.authorize_room(self.room_id):
            return
        after_seq = self._after_seq_from_query()
        await self.accept(self.scope.get("chattalk_subprotocol"))
        self.accepted = True
        if after_seq is not None:
            self.replaying = True  # live frames wait in the buffer until the replay is done
        # Hold live frames until membership is confirmed once more after registering: a leave committed
        # between the first check and the registration sent its close to nobody.
        self.holding = True
        self.registered = True
        try:
            await self.hub.add_user_listener(self)
            await self.hub.join_room(self.room_id, self)
            access = await room_access(self.room_id, self.user)
        except Exception:  # noqa: BLE001 - channel layer or database away: the client retries and resumes
            logger.exception("could not register the socket")
            self.close_with(frames.CLOSE_TRY_AGAIN, "temporarily unavailable; reconnect and resume")
            return
        if access != "ok":
            self.buffer.clear()
            self.close_with(frames.CLOSE_FORBIDDEN, "no longer a member of this room")
            return
        self.holding = False
        self._flush_buffer()
        self.opened = True
        try:
            await chat_socket_opened.asend(
                sender=ChatConsumer, room_id=self.room_id, user_id=self.user_id, connection_id=self.connection_id
            )
        except Exception:  # noqa: BLE001 - presence trouble must never cost the chat its socket
            logger.exception("socket-opened listeners failed")
        if after_seq is not None:
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
        self.closing = True
        if getattr(self, "registered", False):
            self.registered = False
            await self.hub.leave_room(self.room_id, self)
            await self.hub.remove_user_listener(self)
        if getattr(self, "opened", False):
            self.opened = False
            try:
                await chat_socket_closed.asend(
                    sender=ChatConsumer, room_id=self.room_id, user_id=self.user_id, connection_id=self.connection_id
                )
            except Exception:  # noqa: BLE001
                logger.exception("socket-closed listeners failed")

    # --- live delivery (called by the hub) ---------------------------------------------------------
    def deliver_message(self, seq: int, text: str) -> None:
        if self.replaying or self.holding:
            self.buffer.append((seq, text))
        elif seq > self.last_sent_seq:
            self.last_sent_seq = seq
            self._push(text)

    def _flush_buffer(self) -> None:
        if self.replaying or self.holding:
            return
        buffered, self.buffer = self.buffer, []
        for seq, text in buffered:
            if seq > self.last_sent_seq:
                self.last_sent_seq = seq
                self._push(text)

    async def _replay(self, after_seq: int) -> None:
        """Replay seq > after_seq in pages, then `synced`, then what arrived live meanwhile (deduped by seq)."""
        self.replaying = True
        self.last_resume_at = time.monotonic()
        stream = self.hub.rooms.get(self.room_id)
        if stream is not None and stream.last_seq is not None:
            # A client claiming a seq the room has not reached would otherwise drop live frames until the
            # room caught up with its claim.
            after_seq = min(after_seq, stream.last_seq)
        cursor = after_seq
        page_size = settings.WS_REPLAY_PAGE_SIZE
        try:
            while not self.closing:
                page = await replay_page_async(room_id=self.room_id, after_seq=cursor, limit=page_size)
                for message in page:
                    self._push(encode(frames.message_frame(message)))
                    cursor = int(message["seq"])
                if len(page) < page_size:
                    break
                # Let the socket drain before the next page, so a far-behind client cannot hog memory.
                while len(self._out) > page_size and not self.closing:
                    await asyncio.sleep(0.01)
        except DatabaseError:
            logger.exception("replay failed")
            self.push_frame(frames.error_frame("unavailable", "History is unavailable; resume again shortly."))
        self.last_sent_seq = cursor
        self.push_frame(frames.synced_frame(cursor))
        self.replaying = False
        self._flush_buffer()

    async def on_resume(self, frame: dict[str, Any]) -> None:
        after_seq = frame.get("after_seq")
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            self.push_frame(frames.error_frame("invalid_frame", "after_seq must be a non-negative integer."))
            return
        if time.monotonic() - self.last_resume_at < RESUME_MIN_INTERVAL:
            # Each resume may replay the whole history: a loop of them would cost the database, not the client.
            self.push_frame(frames.error_frame("rate_limited", "At most one resume per second."))
            return
        await self._replay(after_seq)

    # --- frames from the client --------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        self.last_activity = time.monotonic()
        if bytes_data is not None:
            if len(bytes_data) > settings.WS_MAX_FRAME_BYTES:
                self.close_with(frames.CLOSE_TOO_BIG, "frame over 64 KiB")
            else:
                self.push_frame(frames.error_frame("binary_not_supported", "Send JSON text frames."))
            return
        if text_data is None:
            return
        if len(text_data) > settings.WS_MAX_FRAME_BYTES // 4 and len(text_data.encode()) > settings.WS_MAX_FRAME_BYTES:
            self.close_with(frames.CLOSE_TOO_BIG, "frame over 64 KiB")
            return
        if not self._take_token():
            return
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):
            self.push_frame(frames.error_frame("invalid_json", "The frame is not valid JSON."))
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            self.push_frame(frames.error_frame("invalid_frame", 'A frame is a JSON object with a "type".'))
            return
        kind = frame["type"]
        if kind == "send":
            await self.on_send(frame)
        elif kind == "ping":
            self.push_frame(frames.pong_frame())
        elif kind == "resume":
            await self.on_resume(frame)
        elif kind == "read":
            await self.on_read(frame)
        elif kind == "typing":
            await self.on_typing()
        else:
            self.push_frame(frames.error_frame("unknown_type", f"Unknown frame type {kind[:40]!r}."))

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
            self.close_with(frames.CLOSE_TOO_MANY, "too many messages")
        else:
            self.push_frame(frames.error_frame("rate_limited", "Too many frames; slow down."))
        return False

    async def on_send(self, frame: dict[str, Any]) -> None:
        client_id = frame.get("client_id")
        echo_id = client_id if isinstance(client_id, str) and len(client_id) <= 64 else None
        self.holding = True  # our own message must not reach us before its ack
        try:
            result = await send_message_async(
                room_id=self.room_id, sender=self.user, client_id=client_id, body=frame.get("body")
            )
        except NotRoomMember:
            self.close_with(frames.CLOSE_FORBIDDEN, "no longer a member of this room")
            return
        except RoomNotFound:
            self.close_with(frames.CLOSE_NOT_FOUND, "the room was deleted")
            return
        except DomainError as exc:
            self.push_frame(frames.error_frame(exc.code, exc.detail, client_id=echo_id))
        except DatabaseError:
            logger.exception("send failed on the database")
            self.push_frame(
                frames.error_frame(
                    "unavailable", "The message was not stored; retry with the same client_id.", client_id=echo_id
                )
            )
        else:
            message = result.message
            stream = self.hub.rooms.get(self.room_id)
            if result.created and stream is not None and stream.is_behind(int(message["seq"])):
                await stream.wait_delivered(int(message["seq"]), ACK_PACING_TIMEOUT)
            self.push_frame(frames.ack_frame(message["client_id"], message["seq"], message["id"]))
        finally:
            self.holding = False
            self._flush_buffer()

    async def on_read(self, frame: dict[str, Any]) -> None:
        try:
            last_read, _unread = await mark_read_async(room_id=self.room_id, user=self.user, seq=frame.get("seq"))
        except DomainError as exc:
            self.push_frame(frames.error_frame(exc.code, exc.detail))
            return
        except DatabaseError:
            self.push_frame(frames.error_frame("unavailable", "Read position not stored; try again."))
            return
        await apublish_room_frame(self.room_id, frames.read_frame(self.user.as_public_dict(), last_read))

    async def on_typing(self) -> None:
        if not self.hub.allow_typing(self.room_id, self.user_id, TYPING_MIN_INTERVAL):
            return  # throttled silently, per user across their tabs: typing is a hint, not a message
        await apublish_room_frame(
            self.room_id, frames.typing_frame(self.user.as_public_dict()), exclude_user_id=self.user_id
        )


class UnknownPathConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = None

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=frames.CLOSE_NOT_FOUND, reason="no such socket path")
