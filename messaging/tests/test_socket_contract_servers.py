"""The chat socket's contract holds the same on uvicorn and on daphne (the Channels project's server), both
started by the one server command (scripts/serve, SERVER=daphne)."""

from __future__ import annotations

import asyncio

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from accounts.testing import access_token_for
from messaging.testing import ChatClient

pytestmark = pytest.mark.django_db(transaction=True)

SERVERS = ["uvicorn", "daphne"]


@pytest.mark.parametrize("server_kind", SERVERS)
def test_send_ack_deliver_resume_refusals_and_limits_are_the_same_on_each_server(
    server_factory, room_with_members, make_user, server_kind
):
    server = server_factory(env={"SERVER": server_kind}, name=server_kind)
    room, (alice, bob) = room_with_members(2)
    outsider = make_user()
    url = f"{server.ws_url}/ws/rooms/{room.pk}/"

    async def close_code(room_id: int, token: str | None) -> int | None:
        client = await ChatClient(server.ws_url, room_id, token).connect()
        return await client.wait_closed()

    async def scenario() -> None:
        a = await ChatClient(server.ws_url, room.pk, access_token_for(alice)).connect()
        b = await ChatClient(server.ws_url, room.pk, access_token_for(bob)).connect()
        client_id = await a.send_message("hello from " + server_kind)
        await a.wait_until(lambda c: c.of_type("ack") and c.messages())
        assert a.frames.index(a.of_type("ack")[0]) < a.frames.index(
            next(f for f in a.frames if f.get("type") == "message" and f["message"]["kind"] == "TALK")
        ), "the ack comes before the sender's own message"
        await b.wait_until(lambda c: c.messages())
        assert b.messages()[0]["client_id"] == client_id
        seq = b.messages()[0]["seq"]

        late = await ChatClient(server.ws_url, room.pk, access_token_for(bob), after_seq=seq - 1).connect()
        await late.wait_until(lambda c: c.of_type("synced"))
        assert [m["seq"] for m in late.messages()] == [seq]

        await a.send_json({"type": "ping"})
        await a.wait_until(lambda c: c.of_type("pong"))
        await a.send_json({"type": "dance"})
        await a.wait_until(lambda c: c.of_type("error"))
        assert a.of_type("error")[0]["code"] == "unknown_type" and a.close_code is None

        assert await close_code(room.pk, None) == 4401
        assert await close_code(room.pk, access_token_for(outsider)) == 4403
        assert await close_code(room.pk + 999, access_token_for(alice)) == 4404

        big = await websockets.connect(f"{url}?access_token={access_token_for(alice)}", max_size=2**24)
        await big.send("x" * (2 * 1024 * 1024))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(big.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009, "a frame over 64 KiB: 1009"

        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(f"{url}?access_token={access_token_for(alice)}", origin="https://evil.example")
        assert refused.value.response.status_code == 403

        for client in (a, b, late):
            await client.close()

    asyncio.run(scenario())
