"""A presence-socket client for tests and tools: follows the snapshot and the changes per user."""

from __future__ import annotations

from typing import Any

from realtime.testing import SocketClient, socket_url


class PresenceClient(SocketClient):
    def __init__(self, base_ws_url: str, room_id: int, token: str | None):
        super().__init__(socket_url(base_ws_url, f"/ws/rooms/{room_id}/presence/", access_token=token))

    def participants(self) -> dict[int, dict[str, Any]]:
        """user id -> latest participant: the snapshot, with every change after it applied."""
        state: dict[int, dict[str, Any]] = {}
        for frame in self.frames:
            if frame.get("type") == "presence.snapshot":
                state = {int(p["user"]["id"]): p for p in frame["participants"]}
            elif frame.get("type") == "presence.changed":
                state[int(frame["participant"]["user"]["id"])] = frame["participant"]
        return state

    def participant(self, user_id: int) -> dict[str, Any] | None:
        return self.participants().get(user_id)

    async def wait_for(self, user_id: int, timeout: float = 10.0, **expected: Any) -> dict[str, Any]:
        """Wait until the user's latest state has these field values (e.g. connected=True, connections=2)."""

        def matches(client: Any) -> bool:
            now = client.participant(user_id)
            return now is not None and all(now.get(k) == v for k, v in expected.items())

        await self.wait_until(matches, timeout)
        found = self.participant(user_id)
        assert found is not None
        return found
