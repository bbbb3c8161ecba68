"""The per-user socket cap across real server processes sharing Redis (realtime.socket_cap)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from websockets import ConnectionClosed

from core.testing import ServerProcess
from messaging.testing import ChatClient
from presence.testing import PresenceClient
from realtime.testing import SocketClient

from .security_support import make_cast

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CAP = 3
TTL_SECONDS = 6  # renewed every 2 s: a killed process's seats count for 4-6 s more


async def try_open(client: SocketClient) -> bool:
    """Connect and ping: True if the socket is open (pong), False if it was refused (its close code is kept)."""
    await client.connect()
    try:
        await client.send_json({"type": "ping"})
    except ConnectionClosed:
        pass  # refused before the ping went out: the close code tells why
    await client.wait_until(lambda c: bool(c.of_type("pong")) or c.close_code is not None, 10)
    return client.close_code is None


async def refused(client: SocketClient) -> bool:
    opened = await try_open(client)
    return not opened and client.close_code == 4429


async def open_when_a_seat_frees(make: object, timeout: float) -> SocketClient:
    """Retry until a seat is free (a close or an expiry is seen by the cap a little later than by the client)."""
    deadline = time.monotonic() + timeout
    while True:
        client = make()  # type: ignore[operator]
        if await try_open(client):
            return client
        assert client.close_code == 4429, client.close_code
        assert time.monotonic() < deadline, "no seat became free"
        await asyncio.sleep(0.2)


def test_the_cap_counts_a_users_sockets_on_every_process_and_a_killed_process_stops_counting_after_the_ttl(
    server_factory,
) -> None:
    env = {
        "WS_MAX_SOCKETS_PER_USER": str(CAP),
        "WS_SOCKET_CAP_TTL_SECONDS": str(TTL_SECONDS),
        "CHANNEL_LAYER_PREFIX": f"cap{uuid.uuid4().hex[:8]}",  # seats of earlier runs never count here
    }
    first: ServerProcess = server_factory(env=env, name="cap-first")
    second: ServerProcess = server_factory(env=env, name="cap-second")
    cast = make_cast()
    room, token = cast.room.pk, cast.token(cast.member)

    async def scenario() -> None:
        # Two seats on the first process (chat and presence count together), one on the second.
        held = [ChatClient(first.ws_url, room, token), PresenceClient(first.ws_url, room, token)]
        held.append(ChatClient(second.ws_url, room, token))
        for client in held:
            assert await try_open(client)
        # The cap is reached across processes: a fourth socket is refused on either, old ones stay open.
        assert await refused(ChatClient(second.ws_url, room, token))
        assert await refused(PresenceClient(first.ws_url, room, token))
        assert all(client.close_code is None for client in held)
        # Past a seat's unrenewed life: the processes renew their seats (one batch each), so the cap still holds.
        await asyncio.sleep(TTL_SECONDS * 1.5)
        assert await refused(ChatClient(first.ws_url, room, token))
        # Per user: someone else still gets in.
        other = ChatClient(second.ws_url, room, cast.token(cast.owner))
        assert await try_open(other)
        # A socket closed on the second process frees a seat that the first process can give.
        await held.pop().close()
        held.append(await open_when_a_seat_frees(lambda: ChatClient(first.ws_url, room, token), 10))

        # The first process dies with its three sockets: no close reaches Redis.
        first.kill()
        assert await refused(ChatClient(second.ws_url, room, token)), "a dead process's seats count until the TTL"
        # Within the TTL they stop counting (each at its own expiry: a seat taken after the last renewal lives a
        # little longer): the second process admits a full cap again, and no more.
        fresh = [
            await open_when_a_seat_frees(lambda: ChatClient(second.ws_url, room, token), 4 * TTL_SECONDS)
            for _ in range(CAP)
        ]
        assert await refused(ChatClient(second.ws_url, room, token))
        for client in [*fresh, other]:
            await client.close()

    asyncio.run(scenario())
