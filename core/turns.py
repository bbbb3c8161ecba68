"""Turns for costly requests, taken on the event loop before Django sees the request.

Some requests are expensive by design (a password hash costs ~42 ms of CPU). In a storm, letting all of
them into Django at once means one thread per request doing its database work next to the requests of users
already in, sharing the GIL and the connection pool. `TurnGate` lets at most `limit` of the requests it
selects run at once; the others wait on the event loop, first come first served, holding no thread and no
database connection.

It waits at the ASGI layer rather than in the view so that the Django side can stay one synchronous chain
(core.middleware.OneThreadPerRequest): a view that awaited a semaphore inside a synchronous chain would hold
its request's thread while it waited. While a request waits here its body is read and kept, so a client that
goes away (http.disconnect) leaves the queue at once, without costing a turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class TurnGate:
    """ASGI middleware: HTTP requests for which `selects(scope)` is true run at most `limit()` at a time
    (read per request, so that settings changed at run time apply; 0 or less: no gate)."""

    def __init__(self, app: Any, selects: Callable[[Scope], bool], limit: Callable[[], int]):
        self.app, self.selects, self.limit = app, selects, limit
        # One semaphore per event loop: the server has one; tests may run several.
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[int, asyncio.Semaphore]] = (
            weakref.WeakKeyDictionary()
        )

    def _gate(self, limit: int) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        known = self._gates.get(loop)
        if known is None or known[0] != limit:
            known = self._gates[loop] = (limit, asyncio.Semaphore(limit))
        return known[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit() if scope["type"] == "http" else 0
        if limit <= 0 or not self.selects(scope):
            await self.app(scope, receive, send)
            return
        gate = self._gate(limit)
        kept: list[Message] = []
        if not await self._wait_for_turn(gate, receive, kept):
            return  # the client went away while it waited: nothing to answer
        try:
            await self.app(scope, _replaying(kept, receive), send)
        finally:
            gate.release()

    @staticmethod
    async def _wait_for_turn(gate: asyncio.Semaphore, receive: Receive, kept: list[Message]) -> bool:
        """Acquires `gate` while reading the request's messages into `kept`; False (and no turn held) when
        the client disconnects first."""
        turn = asyncio.ensure_future(gate.acquire())
        try:
            while True:
                incoming = asyncio.ensure_future(receive())
                done, _ = await asyncio.wait({turn, incoming}, return_when=asyncio.FIRST_COMPLETED)
                if incoming in done:
                    message = incoming.result()
                    kept.append(message)
                    if message["type"] == "http.disconnect":
                        break
                    if turn not in done:
                        continue
                else:
                    incoming.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await incoming
                return True
        except BaseException:
            turn.cancel()
            if turn.done() and not turn.cancelled():
                gate.release()
            raise
        # Disconnected: give back a turn taken in the same instant, or stop waiting for one.
        if turn.done():
            gate.release()
        else:
            turn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await turn
            if not turn.cancelled():
                gate.release()
        return False


def _replaying(kept: list[Message], receive: Receive) -> Receive:
    """A receive that hands out the messages read while waiting, then reads on."""
    pending = list(kept)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def views_marked(attribute: str, methods: tuple[str, ...] = ("POST",)) -> Callable[[Scope], bool]:
    """A selector for TurnGate: requests with one of `methods` whose URL resolves to a view carrying
    `attribute` (set by the app that owns the view, e.g. accounts.password_pool.takes_password_turn)."""
    from django.urls import Resolver404, resolve

    @functools.lru_cache(maxsize=1024)
    def marked(path: str) -> bool:
        try:
            match = resolve(path)
        except Resolver404:
            return False
        return bool(getattr(match.func, attribute, False))

    def selects(scope: Scope) -> bool:
        return scope.get("method") in methods and marked(scope.get("path", ""))

    return selects
