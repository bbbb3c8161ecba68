"""uvicorn's wsproto socket with less kept per open socket: the server protocol scripts/serve names in `--ws`.

uvicorn takes an import string for `--ws` (its Config imports any "module:Class" that is not one of its own
names), so this is configuration, not a patch: the class below is uvicorn's `WSProtocol` with three of its
per-socket parts made smaller, and everything else (framing, close handshake, flow control, keepalive,
limits) left to uvicorn and wsproto.

- The inbox: uvicorn makes an `asyncio.Queue` per socket for what the app reads from `receive()` (four
  deques of 760 bytes each, made up front: its getters, putters and items, and its join() Event's waiters).
  `Inbox` keeps a list only while messages wait and one future only while the app waits; uvicorn pauses
  reading after each message, so the list stays short.
- The "writable" flag: an `asyncio.Event` (a deque of waiters made up front) becomes `WritableFlag`, which
  makes its waiter list only when a send must wait for the transport to drain.
- The handshake: wsproto's `WSConnection` keeps its `H11Handshake` (an h11 connection with its buffers, the
  request and its headers) for the whole life of the socket, though after the accept it is only asked for
  `events()`, which are then always none. Once the accept is written it is replaced by `HANDSHAKE_DONE`,
  which answers that; the rejection path (close before accept) keeps the real one.

Tested in realtime/tests/test_ws_protocol.py; the sockets' own tests run through it (core.testing
serves through scripts/serve). What an open socket costs is measured in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from uvicorn.protocols.websockets.wsproto_impl import WSProtocol


class Inbox:
    """The part of `asyncio.Queue` uvicorn's WSProtocol uses (put_nowait, get, empty), for one reader at a
    time, which is how an ASGI app reads `receive()`."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    async def get(self) -> Any:
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("receive() is already being awaited on this socket")
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        items = self._items
        item = items.pop(0)
        if not items:
            self._items = None
        return item


class WritableFlag:
    """The part of `asyncio.Event` uvicorn uses for "the transport takes more" (set, clear, is_set, wait)."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
                if not self._waiters:
                    self._waiters = None


class _HandshakeDone:
    """Stands in for wsproto's H11Handshake once the connection is established: WSConnection.events() asks
    it for events before the connection's own, and after the accept it has none."""

    __slots__ = ()

    def events(self) -> Iterator[Any]:
        return iter(())


HANDSHAKE_DONE = _HandshakeDone()


class CompactWSProtocol(WSProtocol):
    """uvicorn's wsproto protocol with a smaller inbox, writable flag and no handshake kept after the accept."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = WritableFlag()  # type: ignore[assignment]
        self.writable.set()

    def send(self, message: Any) -> Any:  # type: ignore[override]
        # uvicorn's own coroutine for every frame (no extra frame per send); the accept goes through one more step.
        if message["type"] == "websocket.accept":
            return self._accept(message)
        return super().send(message)

    async def _accept(self, message: Any) -> None:
        await super().send(message)
        conn = self.conn
        if conn.connection is not None and conn.handshake is not HANDSHAKE_DONE:
            # The accept was written and wsproto's Connection took over; the h11 handshake state is never
            # read again (a server-side wsproto Connection starts at the accept: a client may not send first).
            conn.handshake = HANDSHAKE_DONE  # type: ignore[assignment]
