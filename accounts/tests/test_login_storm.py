"""A storm of logins with the real password hasher, on a real server process: every login succeeds, they
queue on the bounded password pool (first come, first served) instead of all finishing at the end, and the
chat socket and the other views of the same process keep answering meanwhile."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from rest_framework_simplejwt.tokens import AccessToken
from websockets.asyncio.client import connect

from accounts.models import User
from rooms.services import create_room

from .conftest import PASSWORD

# Modest in the suite; ACCOUNTS_STORM_USERS=100 replays the full storm by hand.
STORM_USERS = int(os.environ.get("ACCOUNTS_STORM_USERS", "24"))


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_login_storm_with_real_hashing_all_succeeds_in_turn_while_chat_and_other_views_keep_flowing(
    server_factory,
):
    server = server_factory(env={"REAL_PASSWORD_HASHER": "1", "RATE_LIMITS": "off"})
    # Hashes stored before Argon2id, the worst case: each login checks PBKDF2, then stores an Argon2id hash.
    hasher = PBKDF2PasswordHasher()
    encoded = hasher.encode(PASSWORD, hasher.salt())
    User.objects.bulk_create([User(username=f"storm{i}", password=encoded) for i in range(STORM_USERS)])
    chatter = User.objects.create_user(username="chatter", password=PASSWORD)
    room = create_room(owner=chatter, title="storm watch", max_personnel=10)
    access = str(AccessToken.for_user(chatter))  # no login needed: the server trusts our signature
    auth = {"Authorization": f"Bearer {access}"}

    async def scenario() -> tuple[list[tuple[int, float]], list[float], list[float], float]:
        async with (
            httpx.AsyncClient(base_url=server.http_url, timeout=120) as http,
            connect(f"{server.ws_url}/ws/rooms/{room.pk}/?access_token={access}") as ws,
        ):
            started = time.monotonic()

            async def one_login(i: int) -> tuple[int, float]:
                response = await http.post("/api/auth/login", json={"username": f"storm{i}", "password": PASSWORD})
                ok = response.status_code == 200 and set(response.json()) == {"access", "refresh", "user"}
                return (200 if ok else response.status_code), time.monotonic() - started

            storm = asyncio.gather(*(one_login(i) for i in range(STORM_USERS)))
            chat_round_trips: list[float] = []
            other_view: list[float] = []
            await asyncio.sleep(0.2)  # let the storm reach the server first
            while not storm.done():
                sent = time.monotonic()
                client_id = str(uuid.uuid4())
                await ws.send(json.dumps({"type": "send", "client_id": client_id, "body": "still here"}))
                while True:  # our own message comes back through the hub after its ack
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if frame["type"] == "message" and frame["message"]["client_id"] == client_id:
                        break
                chat_round_trips.append(time.monotonic() - sent)
                asked = time.monotonic()
                me = await http.get("/api/auth/me", headers=auth)
                assert me.status_code == 200
                other_view.append(time.monotonic() - asked)
                await asyncio.sleep(0.1)
            return await storm, chat_round_trips, other_view, time.monotonic() - started

    logins, chat_round_trips, other_view, storm_seconds = asyncio.run(scenario())
    assert [status for status, _ in logins] == [200] * STORM_USERS
    finished = sorted(at for _, at in logins)
    print(
        f"storm {storm_seconds:.2f}s; logins done at p50 {statistics.median(finished):.2f}s max {finished[-1]:.2f}s; "
        f"chat round trip max {max(chat_round_trips):.3f}s over {len(chat_round_trips)}; "
        f"/me max {max(other_view):.3f}s"
    )
    # They queue and finish in turn: half are done long before the last (unbounded threads all end together).
    assert statistics.median(finished) < 0.75 * finished[-1]
    assert len(chat_round_trips) >= 3
    assert max(chat_round_trips) < 1.5, chat_round_trips
    assert max(other_view) < 1.5, other_view
