"""Only the password hash waits on the password pool: a login queued for its hash holds no database
connection, so the users already logged in keep being served, and the pool's threads give way to the rest
of the process. On real server processes with the production hashers (REAL_PASSWORD_HASHER=1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from rest_framework_simplejwt.tokens import AccessToken

from accounts.hashers import Argon2idPasswordHasher
from accounts.models import User
from rooms.services import create_room

from .conftest import PASSWORD

# A stored hash from before Argon2id with a high iteration count: its verification takes seconds of CPU, far
# longer than the database pool's timeout below, so a login that kept its connection while hashing would
# make every room list meanwhile wait past that timeout (503).
SLOW_PBKDF2_ITERATIONS = 5_000_000


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_login_waiting_for_its_password_hash_holds_no_database_connection(server_factory):
    server = server_factory(
        env={
            "REAL_PASSWORD_HASHER": "1",
            "RATE_LIMITS": "off",
            "PASSWORD_HASH_WORKERS": "1",
            # One pooled connection for the whole process, given up after 1 s of waiting.
            "DATABASE_POOL_MIN": "1",
            "DATABASE_POOL_MAX": "1",
            "DATABASE_POOL_TIMEOUT": "1",
        }
    )
    hasher = PBKDF2PasswordHasher()
    User.objects.create(
        username="slowhash", password=hasher.encode(PASSWORD, hasher.salt(), iterations=SLOW_PBKDF2_ITERATIONS)
    )
    reader = User.objects.create_user(username="reader", password=PASSWORD)
    create_room(owner=reader, title="still listed", max_personnel=10)
    auth = {"Authorization": f"Bearer {AccessToken.for_user(reader)}"}

    async def scenario() -> tuple[int, list[tuple[int, bool]]]:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=120) as http:
            login = asyncio.create_task(
                http.post("/api/auth/login", json={"username": "slowhash", "password": PASSWORD})
            )
            lists: list[tuple[int, bool]] = []
            await asyncio.sleep(0.3)  # the login's user lookup first; then it waits seconds for its hash
            while not login.done():
                response = await http.get("/api/rooms", headers=auth)
                lists.append((response.status_code, not login.done()))
                await asyncio.sleep(0.2)
            return (await login).status_code, lists

    login_status, lists = asyncio.run(scenario())
    assert login_status == 200
    answered_during_login = [status for status, during in lists if during]
    assert len(answered_during_login) >= 3, lists
    assert set(answered_during_login) == {200}, lists
    # The login went on with its user after the hash: the stored hash was upgraded to Argon2id.
    assert User.objects.get(username="slowhash").password.startswith("argon2$argon2id$")


def _thread_nice_values(pid: int) -> dict[int, int]:
    """Each thread's nice value, from /proc (field 19 of stat, after the command name). A request's thread
    may end between the listing and its read: it is left out."""
    values = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        values[int(task.name)] = int(fields[16])
    return values


@pytest.mark.django_db(transaction=True)
def test_password_hashes_run_on_threads_of_lower_cpu_priority_than_the_event_loop(server_factory):
    server = server_factory(env={"REAL_PASSWORD_HASHER": "1", "RATE_LIMITS": "off", "PASSWORD_HASH_WORKERS": "2"})
    User.objects.create(username="niceone", password=Argon2idPasswordHasher().encode(PASSWORD, "saltsaltsalt"))
    with httpx.Client(base_url=server.http_url, timeout=30) as http:
        response = http.post("/api/auth/login", json={"username": "niceone", "password": PASSWORD})
        assert response.status_code == 200, response.text
        # An unknown username costs a hash too (Django's dummy hash, so that both take the same time).
        assert http.post("/api/auth/login", json={"username": "nobody", "password": PASSWORD}).status_code == 401
    nice = _thread_nice_values(server.pid)
    assert nice[server.pid] == 0, nice  # the main thread: uvicorn's event loop
    assert 10 in nice.values(), nice  # the pool's threads (PASSWORD_HASH_NICE's default)
