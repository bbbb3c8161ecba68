"""Small socket clients for tests and tools: connect, send JSON, and collect frames by kind.

`SocketClient` speaks to a real server over the network; `CommunicatorClient` has the same interface over
Channels' WebsocketCommunicator, for socket behaviour that needs no second process.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import websockets


def socket_url(base_ws_url: str, path: str, **query: Any) -> str:
    """base + path + the query parameters that are not None."""
    params = {key: value for key, value in query.items() if value is not None}
    return f"{base_ws_url}{path}" + (f"?{urlencode(params)}" if params else "")


class SocketClient:
    def __init__(self, url: str):
        self.url = url
        self.frames: list[dict[str, Any]] = []
        self.ws: Any = None
        self.close_code: int | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def connect(self, **kwargs: Any) -> SocketClient:
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

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == kind]

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


class CommunicatorClient(SocketClient):
    """A SocketClient over an already connected channels.testing.WebsocketCommunicator."""

    def __init__(self, communicator: Any):
        super().__init__("in-process")
        self.communicator = communicator
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            while True:
                output = await self.communicator.output_queue.get()
                if output["type"] == "websocket.close":
                    self.close_code = output.get("code", 1000)
                    return
                if output["type"] == "websocket.send":
                    self.frames.append(json.loads(output.get("text") or output.get("bytes")))
                self._changed.set()
        finally:
            self._changed.set()

    async def send_json(self, frame: dict[str, Any]) -> None:
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def send_raw(self, text: str | None = None, data: bytes | None = None) -> None:
        await self.communicator.send_to(text_data=text, bytes_data=data)

    async def close(self) -> None:
        if self.close_code is None:
            await self.communicator.disconnect()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
