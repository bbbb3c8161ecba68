"""Opening a room's live stream when the channel layer fails: every socket waiting on it is answered."""

from __future__ import annotations

import asyncio
import signal

import pytest

from accounts.testing import access_token_for
from core.testing import own_redis


@pytest.mark.redis
def test_sockets_waiting_on_a_room_whose_group_join_fails_are_all_closed_with_1013_not_left_hanging(
    ws_connect, room_with_members, settings
):
    """Redis dies while the first socket of a room joins the room's group and a second socket waits for
    that join: both get 1013 (retry) at once, and a socket opened after Redis is back streams normally."""
    room, (alice, bob) = room_with_members(2)
    redis = own_redis().start()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{redis.port}/0"], "prefix": "join-failure"},
        }
    }
    path = f"/ws/rooms/{room.pk}/"

    async def scenario() -> None:
        assert redis.process is not None
        redis.process.send_signal(signal.SIGSTOP)  # the group join hangs...
        first = asyncio.ensure_future(ws_connect(path, access_token_for(alice)))
        second = asyncio.ensure_future(ws_connect(path, access_token_for(bob)))
        await asyncio.sleep(1.0)
        redis.process.send_signal(signal.SIGKILL)  # ...and Redis dies under it
        sockets = await asyncio.wait_for(asyncio.gather(first, second), 15)
        for socket in sockets:
            closed = await socket.receive_output(timeout=15)
            assert closed == {"type": "websocket.close", "code": 1013, "reason": closed.get("reason")}

        redis.process.wait(timeout=10)
        redis.start()  # the same port: the layer's next connection reaches it
        again = await ws_connect(path, access_token_for(alice))
        await again.send_json_to({"type": "send", "client_id": "after-restart", "body": "hello again"})
        ack = await again.receive_json_from(timeout=10)
        assert ack["type"] == "ack"
        message = await again.receive_json_from(timeout=10)
        assert message["type"] == "message" and message["message"]["body"] == "hello again"
        await again.disconnect()

    try:
        asyncio.run(scenario())
    finally:
        redis.stop(signal.SIGKILL)
