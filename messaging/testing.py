"""A chat-socket client for tests and tools: /ws/rooms/{id}/, sends and the messages it received."""

from __future__ import annotations

import uuid
from typing import Any

from realtime.testing import CommunicatorClient, SocketClient, socket_url


class ChatFrames:
    """What a chat client adds to a socket client: sends, and the messages it received."""

    frames: list[dict[str, Any]]

    async def send_message(self, body: str, client_id: str | None = None) -> str:
        client_id = client_id or str(uuid.uuid4())
        await self.send_json({"type": "send", "client_id": client_id, "body": body})  # type: ignore[attr-defined]
        return client_id

    def messages(self, kind: str | None = "TALK") -> list[dict[str, Any]]:
        found = [f["message"] for f in self.frames if f.get("type") == "message"]
        return [m for m in found if kind is None or m["kind"] == kind]

    def event_seqs(self) -> list[int]:
        """The seqs of the room events received (messages and changes), in arrival order."""
        return [
            f["message"]["seq"] if f["type"] == "message" else f["seq"]
            for f in self.frames
            if f.get("type") in ("message", "message.updated")
        ]

    def folded(self) -> dict[int, dict[str, Any]]:
        """The room as this client sees it: every message by id, in the state its last frame gave it."""
        state: dict[int, dict[str, Any]] = {}
        for frame in self.frames:
            if frame.get("type") in ("message", "message.updated"):
                state[frame["message"]["id"]] = frame["message"]
        return state


class ChatClient(ChatFrames, SocketClient):
    """The chat socket of a real server."""

    def __init__(self, base_ws_url: str, room_id: int, token: str | None, after_seq: int | None = None):
        super().__init__(socket_url(base_ws_url, f"/ws/rooms/{room_id}/", access_token=token, after_seq=after_seq))


class InProcessChatClient(ChatFrames, CommunicatorClient):
    """The chat socket of the application in this process (conftest's `ws_connect`)."""
