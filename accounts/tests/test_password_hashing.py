"""Passwords are stored with Argon2id, and a hash stored before (PBKDF2) is upgraded at its user's next login
without revoking anything. On real server processes with the production hashers (REAL_PASSWORD_HASHER=1):
this pytest process itself hashes with MD5 for speed."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.hashers import Argon2idPasswordHasher
from accounts.models import User
from rooms.services import create_room

from .conftest import PASSWORD
from .test_sockets import REVOCATION_DEADLINE, open_socket, ping

socket_test = pytest.mark.django_db(transaction=True)
PRODUCTION = {"REAL_PASSWORD_HASHER": "1"}


def assert_argon2id_with_owasp_parameters(encoded: str) -> None:
    assert encoded.startswith("argon2$argon2id$"), encoded
    decoded = Argon2idPasswordHasher().decode(encoded)
    assert (decoded["memory_cost"], decoded["time_cost"], decoded["parallelism"]) == (19 * 1024, 2, 1), decoded


@socket_test
def test_a_signup_on_the_production_settings_stores_an_argon2id_hash(server_factory):
    server = server_factory(env=PRODUCTION)
    response = httpx.post(
        f"{server.http_url}/api/auth/signup", json={"username": "argonaut", "password": PASSWORD}, timeout=30
    )
    assert response.status_code == 201, response.text
    assert_argon2id_with_owasp_parameters(User.objects.get(username="argonaut").password)


@socket_test
def test_a_stored_pbkdf2_hash_is_upgraded_at_login_and_nothing_the_user_holds_is_revoked(server_factory):
    server = server_factory(env=PRODUCTION)
    pbkdf2 = PBKDF2PasswordHasher()
    user = User.objects.create(username="oldtimer", password=pbkdf2.encode(PASSWORD, pbkdf2.salt()))
    room = create_room(owner=user, title="old room", max_personnel=10)
    # Tokens and a session from before the upgrade: a login while PBKDF2 was the preferred hasher.
    before = APIClient()
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"]):
        response = before.post("/api/auth/login", {"username": "oldtimer", "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    old_tokens = response.json()
    session = {"Cookie": f"sessionid={before.cookies['sessionid'].value}"}
    user.refresh_from_db()
    assert user.password.startswith("pbkdf2_sha256$")
    generation = user.credential_generation
    url = f"{server.ws_url}/ws/rooms/{room.pk}/"

    async def scenario() -> None:
        by_token = await open_socket(f"{url}?access_token={old_tokens['access']}")
        by_session = await open_socket(url, additional_headers=session)
        for ws in (by_token, by_session):
            await ping(ws)
        login = await asyncio.to_thread(
            httpx.post, f"{server.http_url}/api/auth/login", json={"username": "oldtimer", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        # Past a whole round of the periodic revocation re-check: both sockets still answer.
        await asyncio.sleep(REVOCATION_DEADLINE + 1.5)
        for ws in (by_token, by_session):
            await ping(ws)
            await ws.close()

    asyncio.run(scenario())
    user.refresh_from_db()
    assert_argon2id_with_owasp_parameters(user.password)
    assert user.credential_generation == generation  # a rehash is not a password change
    with httpx.Client(base_url=server.http_url, timeout=30) as http:
        me = http.get("/api/auth/me", headers={"Authorization": f"Bearer {old_tokens['access']}"})
        assert me.status_code == 200, me.text
        assert http.get("/api/auth/me", headers=session).status_code == 200
        assert http.post("/api/auth/refresh", json={"refresh": old_tokens["refresh"]}).status_code == 200
        upgraded = user.password
        again = http.post("/api/auth/login", json={"username": "oldtimer", "password": PASSWORD})
        assert again.status_code == 200, again.text
    user.refresh_from_db()
    assert user.password == upgraded  # the parameters are the preferred ones: no second rehash
