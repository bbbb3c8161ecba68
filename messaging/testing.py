"""A small chat-socket client for tests and tools: connect, send, and collect frames by kind."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import websockets
from rest_framework_simplejwt.tokens import AccessToken


def access_token_for(user: Any) -> str:
    return str(AccessToken.for_user(user))


class ChatClient:
    def __init__(self, base_ws_url: str, room_id: int, token: str | None, after_seq: int | None = None):
        query = []
        if token:
            query.append(f"access_token={token}")
        if after_seq is not None:
            query.append(f"after_seq={after_seq}")
        self.url = f"{base_ws_url}/ws/rooms/{room_id}/" + (f"?{'&'.join(query)}" if query else "")
        self.frames: list[dict[str, Any]] = []
        self.ws: Any = None
        self.close_code: int | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def connect(self, **kwargs: Any) -> ChatClient:
        self.ws = await websockets.connect(self.url, max_size=2**22, **kwargs)
        self._reader = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self._changed.set()

    async def send_json(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def send_message(self, body: str, client_id: str | None = None) -> str:
        client_id = client_id or str(uuid.uuid4())
        await self.send_json({"type": "send", "client_id": client_id, "body": body})
        return client_id

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == kind]

    def messages(self, kind: str | None = "TALK") -> list[dict[str, Any]]:
        found = [f["message"] for f in self.frames if f.get("type") == "message"]
        return [m for m in found if kind is None or m["kind"] == kind]

    async def wait_until(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until predicate(self) is true; raise TimeoutError with what arrived otherwise."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(self):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met; close={self.close_code}; last frames={self.frames[-5:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.5))
            except TimeoutError:
                pass

    async def wait_closed(self, timeout: float = 10.0) -> int | None:
        await self.wait_until(lambda c: c.close_code is not None, timeout)
        return self.close_code

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
