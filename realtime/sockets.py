"""The base of every socket: authentication outcome, the contract's refusals, one ordered output, the hub.

A socket's life is one state machine (SocketState): CONNECTING while it is authorized, SYNCING once accepted
and registered while event frames are held back (until membership is confirmed once more, or a replay
ends), LIVE while event frames go straight out, CLOSING once it is refused or closed. Subclasses (the chat
and presence sockets) decide when to move; the base refuses a move the machine does not allow.

Every frame to the client goes through one ordered output per socket (`push`): acks, replays, live frames
and errors can never overtake each other, and a slow client never blocks the hub: past OUTPUT_LIMIT queued
frames the socket is closed with 1013 and the client resumes.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from channels.consumer import get_handler_name
from channels.db import DatabaseSyncToAsync
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from core.request_id import current_request_id

from . import frames, wire
from .auth import ANONYMOUS, UNAVAILABLE, SocketAuth
from .hub import Hub, get_hub

logger = logging.getLogger(__name__)

OUTPUT_LIMIT = 5000


class SocketState(enum.Enum):
    CONNECTING = "connecting"
    SYNCING = "syncing"
    LIVE = "live"
    CLOSING = "closing"


ALLOWED_MOVES: dict[SocketState, frozenset[SocketState]] = {
    SocketState.CONNECTING: frozenset({SocketState.SYNCING, SocketState.LIVE, SocketState.CLOSING}),
    SocketState.SYNCING: frozenset({SocketState.LIVE, SocketState.CLOSING}),
    SocketState.LIVE: frozenset({SocketState.SYNCING, SocketState.CLOSING}),
    SocketState.CLOSING: frozenset(),
}


def in_worker_thread(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Run ORM work on the worker pool (not the single thread-sensitive thread): the calls of many sockets
    run side by side, each thread with its own database connection."""
    return DatabaseSyncToAsync(func, thread_sensitive=False)


def send_without_task(send: Callable[[dict[str, Any]], Any], text: str) -> tuple[Any, Any] | None:
    """Start writing one frame; returns None when it finished, else (the suspended coroutine, what it waits on).

    The server's send (uvicorn) finishes without suspending unless the peer's transport is paused by flow
    control, so its coroutine is driven one step by hand: a task per socket per message was a large share
    of the server's CPU in a big fan-out (docs/BENCHMARKS.md). A send that does suspend is finished by a
    writer task.
    """
    coro = send({"type": "websocket.send", "text": text})
    try:
        awaited = coro.send(None)
    except StopIteration:
        return None
    except Exception:  # noqa: BLE001 - the peer went away; disconnect() cleans up
        return None
    return coro, awaited


class SocketBase(AsyncWebsocketConsumer):
    # The hub is the only channel-layer reader of the process; sockets have no channel of their own.
    channel_layer_alias = None
    kind = "socket"  # the label of this kind of socket in /metrics
    receives_user_frames = True  # mentions and room activity of its user (realtime.publish.publish_user_frame)

    user_id: int = 0
    room_id: int | None = None
    auth: SocketAuth | None = None
    state: SocketState = SocketState.CONNECTING
    _wire: Any = None  # uvicorn's protocol when frames may be written to it directly (realtime.wire)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Channels' AsyncConsumer.__call__ for a consumer without a channel layer, reading `receive` in this
        task: Channels' await_many_dispatch reads it in a task of its own per message, waited on with
        asyncio.wait (a second task, its coroutines, a waiter future and callbacks held by every idle socket).
        Messages are dispatched one at a time, in order, as there."""
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes old DB connections around every frame (a thread hop each); our ORM calls run in
        # worker threads that do that themselves, so the event loop does not pay for it per frame.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- state ----------------------------------------------------------------------------------------
    def move_to(self, state: SocketState) -> None:
        if state is self.state:
            return
        if state not in ALLOWED_MOVES[self.state]:
            raise RuntimeError(f"socket cannot move from {self.state.value} to {state.value}")
        self.state = state
        self.on_state_change()

    def on_state_change(self) -> None:
        """Subclasses release what they held back when the socket goes LIVE."""

    @property
    def closing(self) -> bool:
        return self.state is SocketState.CLOSING

    # --- opening --------------------------------------------------------------------------------------
    def init_socket(self) -> None:
        self.connection_id = uuid.uuid4().hex
        self.state = SocketState.CONNECTING
        self.registered = False
        self.seat_taken = False  # under the per-user socket cap (realtime.socket_cap)
        # Made when a frame must wait (an earlier one is still being written): an empty deque is 760 bytes,
        # and most sockets, idle or keeping up, never need one.
        self._out: deque[str] | None = None
        self._writing = False
        user = self.scope.get("user")
        self.user = user
        self.user_id = int(user.pk) if user is not None and user.is_authenticated else 0
        self.auth = self.scope.get("socket_auth") or ANONYMOUS
        self.last_activity = time.monotonic()
        self.hub: Hub = get_hub()
        current_request_id.set(self.connection_id[:12])

    async def check_access(self) -> tuple[int, str] | None:
        """Subclasses: (close code, reason) if this user may not open this socket."""
        return None

    async def authorize(self) -> bool:
        """Refuse with 4401/1013, the subclass's check, or 4429 as the contract says; True if it may open."""
        refusal: tuple[int, str] | None = None
        if not self.user_id:
            error = self.auth.error if self.auth is not None else None
            if error == UNAVAILABLE:
                refusal = (frames.CLOSE_TRY_AGAIN, "authentication unavailable; retry shortly")
            else:
                refusal = (frames.CLOSE_NOT_AUTHENTICATED, error or "login")
        else:
            refusal = await self.check_access()
            if refusal is None:
                # Last, so that only a socket that may open takes a seat; given back in unregister().
                self.seat_taken = await self.hub.socket_cap.take_seat(
                    self.user_id, self.connection_id, self.hub.sockets_of(self.user_id)
                )
                if not self.seat_taken:
                    refusal = (frames.CLOSE_TOO_MANY, "too many sockets for this user")
        if refusal is not None:
            await self.accept_then_close(*refusal)
            return False
        return True

    async def accept_then_close(self, code: int, reason: str) -> None:
        """The contract's refusal: accept first, so that the client sees the close code."""
        logger.info("socket refused with %s: %s", code, reason)
        self.move_to(SocketState.CLOSING)
        await self.accept(self.scope.get("chattalk_subprotocol"))
        await self.close(code=code, reason=reason)

    async def accept_socket(self, state: SocketState) -> None:
        await self.accept(self.scope.get("chattalk_subprotocol"))
        self._wire = wire.direct_protocol(self.base_send)
        self.move_to(state)

    async def register(self) -> None:
        """Count the socket for its user: revocations, sweeps and re-checks reach it from now on."""
        self.registered = True
        await self.hub.add_user_socket(self)

    async def unregister(self) -> bool:
        """On disconnect; True the first time (the socket was registered)."""
        self.state = SocketState.CLOSING
        if getattr(self, "seat_taken", False):
            self.seat_taken = False
            await self.hub.socket_cap.give_back_seat(self.user_id, self.connection_id)
        if not getattr(self, "registered", False):
            return False
        self.registered = False
        await self.hub.remove_user_socket(self)
        return True

    # --- ordered output -------------------------------------------------------------------------------
    def push(self, text: str) -> None:
        if self.state is SocketState.CLOSING:
            return
        if not self._writing and not self._out:
            if self._wire is not None and wire.write_now(self._wire, text):
                return
            pending = send_without_task(self.base_send, text)
            if pending is not None:
                self._writing = True
                asyncio.ensure_future(self._write_loop(*pending))
            return
        if self._out is None:
            self._out = deque()
        self._out.append(text)
        if len(self._out) > OUTPUT_LIMIT:
            self.close_with(frames.CLOSE_TRY_AGAIN, "client too slow; resume from your last seq")
            return
        if not self._writing:
            self._writing = True
            asyncio.ensure_future(self._write_loop(None, None))

    async def _write_loop(self, suspended: Any, awaited: Any) -> None:
        """Finish a send that suspended (if any), then write what queued up, one frame at a time."""
        try:
            while suspended is not None:
                if awaited is None:
                    await asyncio.sleep(0)  # a bare yield: let the loop run once
                else:
                    await asyncio.wait([awaited])  # the future the send waits on (the transport drained)
                try:
                    awaited = suspended.send(None)
                except StopIteration:
                    suspended = None
            while self._out and self.state is not SocketState.CLOSING:
                await self.base_send({"type": "websocket.send", "text": self._out.popleft()})
        except Exception:  # noqa: BLE001 - the peer went away; disconnect() cleans up
            self._out = None
        finally:
            if suspended is not None:
                suspended.close()
            self._writing = False
            if not self._out:
                self._out = None  # a burst's queue goes with the burst

    def queued_frames(self) -> int:
        return len(self._out) if self._out is not None else 0

    def push_frame(self, frame: dict[str, Any]) -> None:
        self.push(frames.encode(frame))

    # --- called by the hub ----------------------------------------------------------------------------
    def deliver_frame(self, text: str) -> None:
        self.push(text)

    def deliver_event(self, seq: int, text: str, visible_seq: int | None = None) -> None:
        """Room events in seq order; sockets that do not stream a room ignore them."""

    def close_with(self, code: int, reason: str) -> None:
        if self.state is SocketState.CLOSING:
            return
        self.move_to(SocketState.CLOSING)
        self._out = None
        logger.info("closing socket with %s: %s", code, reason)
        asyncio.ensure_future(self._close_quietly(code, reason))

    async def _close_quietly(self, code: int, reason: str) -> None:
        """Close; a peer that is already gone (the server's send raises) needs no close frame, and the
        exception must not be left in a task nobody awaits (asyncio logged each one)."""
        try:
            await self.close(code=code, reason=reason)
        except Exception:  # noqa: BLE001 - uvicorn's ClientDisconnected, a transport already closed
            logger.debug("socket gone before its close frame (%s)", code)


class UnknownPathSocket(AsyncWebsocketConsumer):
    """Unknown socket paths are accepted and closed with 4404 rather than dropped."""

    channel_layer_alias = None

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=frames.CLOSE_NOT_FOUND, reason="no such socket path")
