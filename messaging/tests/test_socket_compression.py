"""Sockets as browsers open them: every browser offers permessage-deflate. By default the server declines it
(scripts/serve, WS_COMPRESSION off); with WS_COMPRESSION=on it negotiates it. Either way a socket that
negotiated compression and one that did not see the same messages in the same order, across a resume."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from accounts.testing import access_token_for

pytestmark = pytest.mark.django_db(transaction=True)


async def open_socket(url: str, compression: str | None) -> Any:
    return await websockets.connect(url, compression=compression, max_size=2**22)


def negotiated(ws: Any) -> str | None:
    return ws.response.headers.get("Sec-WebSocket-Extensions")


async def read_until_synced_or(ws: Any, stop: Any) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not stop(frames):
        frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    return frames


def messages_of(frames: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(f["message"]["seq"], f["message"]["body"]) for f in frames if f["type"] == "message"]


@pytest.mark.parametrize("compression", ["off", "on"])
def test_a_deflate_socket_and_a_plain_one_receive_identical_messages_in_order_also_across_resume(
    server_factory, room_with_members, compression
):
    server = server_factory(env={"WS_COMPRESSION": compression, "RATE_LIMITS": "off"}, name=f"deflate-{compression}")
    room, (alice, bob) = room_with_members(2)
    url = f"{server.ws_url}/ws/rooms/{room.pk}/?access_token="

    async def scenario() -> None:
        offering = await open_socket(url + access_token_for(bob), "deflate")  # as a browser does
        plain = await open_socket(url + access_token_for(bob), None)
        sender = await open_socket(url + access_token_for(alice), None)
        if compression == "on":
            assert "permessage-deflate" in (negotiated(offering) or "")
        else:
            assert negotiated(offering) is None, "offered, declined: no socket keeps a deflate state"
        assert negotiated(plain) is None
        bodies = [f"message {i}" + " chat text that compresses well" * (i % 7) for i in range(40)]
        for i, body in enumerate(bodies):
            await sender.send(json.dumps({"type": "send", "client_id": f"c{i}", "body": body}))

        def got_all(frames: list[dict[str, Any]]) -> bool:
            return len(messages_of(frames)) >= len(bodies)

        live_offering, live_plain = await asyncio.gather(
            read_until_synced_or(offering, got_all), read_until_synced_or(plain, got_all)
        )
        assert messages_of(live_offering) == messages_of(live_plain)
        assert [body for _, body in messages_of(live_plain)] == bodies
        seqs = [seq for seq, _ in messages_of(live_plain)]
        assert seqs == sorted(seqs)

        # Both resume from the middle on new sockets: the replays are identical too.
        middle = seqs[len(seqs) // 2]
        resumed = [
            await open_socket(f"{url}{access_token_for(bob)}&after_seq={middle}", kind) for kind in ("deflate", None)
        ]
        replays = await asyncio.gather(
            *(read_until_synced_or(ws, lambda frames: any(f["type"] == "synced" for f in frames)) for ws in resumed)
        )
        assert messages_of(replays[0]) == messages_of(replays[1]) == [m for m in messages_of(live_plain) if m[0] > middle]
        for ws in (offering, plain, sender, *resumed):
            await ws.close()

    asyncio.run(scenario())
