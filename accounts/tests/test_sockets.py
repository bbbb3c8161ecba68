"""WebSocket authentication on real server processes: the three ways in, the refusals (4401, bad Origin),
and revocation that closes live sockets within 5 s on whichever process holds them."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from rest_framework_simplejwt.tokens import AccessToken
from rest_framework_simplejwt.utils import aware_utcnow
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from accounts.models import User
from rooms.services import create_room

from .conftest import PASSWORD

socket_test = pytest.mark.django_db(transaction=True)
REVOCATION_DEADLINE = 5.0


def make_member(username: str, **extra: Any) -> tuple[User, int]:
    user = User.objects.create_user(username=username, password=PASSWORD, nickname=username.title(), **extra)
    room = create_room(owner=user, title=f"{username}'s room", max_personnel=10)
    return user, room.pk


def http_login(server: Any, username: str) -> tuple[httpx.Client, dict[str, Any]]:
    """A client holding the session, CSRF and refresh cookies, and the login body (access, refresh)."""
    client = httpx.Client(base_url=server.http_url, timeout=30)
    response = client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return client, response.json()


async def open_socket(url: str, **kwargs: Any) -> ClientConnection:
    return await connect(url, open_timeout=10, **kwargs)


async def ping(ws: ClientConnection, timeout: float = 5.0) -> None:
    """A pong proves the socket is open and its connect() finished (so its hub subscriptions exist)."""
    await ws.send(json.dumps({"type": "ping"}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if frame["type"] == "pong":
            return


async def close_code(ws: ClientConnection, timeout: float) -> int | None:
    """Wait for the server to close the socket; its close code, or None if it stayed open."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
    except TimeoutError:
        return None


async def refused_with(url: str, **kwargs: Any) -> int | None:
    """Connect, and return the close code the server sends right after accepting."""
    ws = await open_socket(url, **kwargs)
    return await close_code(ws, 5.0)


def expired_access(user: User) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(from_time=aware_utcnow() - timedelta(minutes=5), lifetime=timedelta(0))
    return str(token)


# --- the three ways in, and the refusals ----------------------------------------------------------------
@socket_test
def test_a_socket_authenticates_by_query_token_subprotocol_or_session_cookie(server_factory):
    server = server_factory()
    _user, room_id = make_member("wsin")
    client, tokens = http_login(server, "wsin")
    url = f"{server.ws_url}/ws/rooms/{room_id}/"
    session_cookie = f"sessionid={client.cookies['sessionid']}"

    async def scenario() -> None:
        async with await open_socket(f"{url}?access_token={tokens['access']}") as ws:
            await ping(ws)
        async with await open_socket(url, subprotocols=["chattalk", f"bearer.{tokens['access']}"]) as ws:
            assert ws.subprotocol == "chattalk"  # echoed back, never the bearer entry
            await ping(ws)
        async with await open_socket(url, additional_headers={"Cookie": session_cookie}) as ws:
            await ping(ws)

    asyncio.run(scenario())


@socket_test
def test_missing_invalid_expired_foreign_and_refresh_tokens_are_accepted_then_closed_4401(server_factory):
    server = server_factory()
    user, room_id = make_member("wsbad")
    foreign = jwt.encode(dict(AccessToken.for_user(user).payload), "not-our-signing-key-" * 3, algorithm="HS256")
    _client, tokens = http_login(server, "wsbad")
    url = f"{server.ws_url}/ws/rooms/{room_id}/"

    async def scenario() -> None:
        assert await refused_with(url) == 4401
        assert await refused_with(f"{url}?access_token=garbage") == 4401
        assert await refused_with(f"{url}?access_token={'x' * 5000}") == 4401
        assert await refused_with(f"{url}?access_token={expired_access(user)}") == 4401
        assert await refused_with(f"{url}?access_token={foreign}") == 4401
        assert await refused_with(f"{url}?access_token={tokens['refresh']}") == 4401
        assert await refused_with(url, subprotocols=["chattalk", "bearer.garbage"]) == 4401

    asyncio.run(scenario())


@socket_test
def test_an_origin_other_than_our_own_or_a_configured_one_is_refused_before_accept_port_and_scheme_included(
    server_factory,
):
    server = server_factory(env={"CORS_ALLOWED_ORIGINS": "https://spa.example.com"})
    _user, room_id = make_member("wsorigin")
    _client, tokens = http_login(server, "wsorigin")
    url = f"{server.ws_url}/ws/rooms/{room_id}/?access_token={tokens['access']}"

    async def scenario() -> None:
        foreign = (
            "https://evil.example.net",
            f"http://127.0.0.1:{server.port + 1}",  # another port of the same host
            f"https://127.0.0.1:{server.port}",  # another scheme
            "http://localhost:3000",  # a dev server on another port: configure it in CORS_ALLOWED_ORIGINS
        )
        for origin in foreign:
            with pytest.raises(InvalidStatus) as refused:
                await open_socket(url, origin=origin)
            assert refused.value.response.status_code == 403, origin
        for allowed in ("https://spa.example.com", f"http://127.0.0.1:{server.port}"):
            async with await open_socket(url, origin=allowed) as ws:
                await ping(ws)

    asyncio.run(scenario())


@socket_test
def test_a_socket_whose_access_token_expires_while_open_is_closed_4401_within_5_s(server_factory):
    server = server_factory(env={"JWT_ACCESS_SECONDS": "3"})
    _user, room_id = make_member("wsexpiry")
    _client, tokens = http_login(server, "wsexpiry")
    expires_at = jwt.decode(tokens["access"], options={"verify_signature": False})["exp"]
    url = f"{server.ws_url}/ws/rooms/{room_id}/?access_token={tokens['access']}"

    async def scenario() -> None:
        async with await open_socket(url) as ws:
            await ping(ws)
            code = await close_code(ws, 10.0)
            closed_at = time.time()
        assert code == 4401
        assert closed_at - expires_at < REVOCATION_DEADLINE, closed_at - expires_at
        assert await refused_with(url) == 4401  # and the expired token opens nothing new

    asyncio.run(scenario())


# --- revocation across processes ------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.redis
@socket_test
def test_logout_on_one_process_closes_that_tokens_and_that_sessions_sockets_on_another_within_5_s(
    server_factory,
):
    web1, web2 = server_factory(name="web1"), server_factory(name="web2")
    _user, room_id = make_member("wslogout")
    client, tokens = http_login(web1, "wslogout")  # this device: session cookie + tokens
    _other_client, other = http_login(web1, "wslogout")  # another device of the same user
    url = f"{web2.ws_url}/ws/rooms/{room_id}/"
    cookie = {"Cookie": f"sessionid={client.cookies['sessionid']}"}

    async def scenario() -> None:
        by_token = await open_socket(f"{url}?access_token={tokens['access']}")
        by_session = await open_socket(url, additional_headers=cookie)
        other_device = await open_socket(f"{url}?access_token={other['access']}")
        for ws in (by_token, by_session, other_device):
            await ping(ws)
        started = time.monotonic()
        response = await asyncio.to_thread(
            client.post,
            "/api/auth/logout",
            json={"refresh": tokens["refresh"]},
            headers={"Authorization": f"Bearer {tokens['access']}"},
        )
        assert response.status_code == 204, response.text
        codes = await asyncio.gather(
            close_code(by_token, REVOCATION_DEADLINE), close_code(by_session, REVOCATION_DEADLINE)
        )
        assert codes == [4401, 4401]
        assert time.monotonic() - started < REVOCATION_DEADLINE
        await ping(other_device)  # the other device's socket is untouched
        await other_device.close()
        # Everywhere refused from now on: new sockets on either process, REST, refresh.
        for server in (web1, web2):
            assert await refused_with(f"{server.ws_url}/ws/rooms/{room_id}/?access_token={tokens['access']}") == 4401
            assert await refused_with(f"{server.ws_url}/ws/rooms/{room_id}/", additional_headers=cookie) == 4401

    asyncio.run(scenario())
    me = httpx.get(f"{web2.http_url}/api/auth/me", headers={"Authorization": f"Bearer {tokens['access']}"})
    assert me.status_code == 401 and me.json()["code"] == "token_revoked"
    again = httpx.post(f"{web2.http_url}/api/auth/refresh", json={"refresh": tokens["refresh"]})
    assert again.status_code == 401 and again.json()["code"] in {"token_reused", "token_invalid"}


def admin_client(server: Any, username: str) -> httpx.Client:
    """A staff user's browser: logged in through the API, which also starts the admin's session."""
    client, _tokens = http_login(server, username)
    page = client.get("/admin/accounts/user/")
    assert page.status_code == 200, page.text[:500]
    return client


@pytest.mark.postgres
@pytest.mark.redis
@socket_test
def test_deactivation_in_the_admin_of_one_process_closes_every_socket_on_another_within_5_s(server_factory):
    web1, web2 = server_factory(name="web1"), server_factory(name="web2")
    User.objects.create_user(username="operator", password=PASSWORD, is_staff=True, is_superuser=True)
    victim, room_id = make_member("wsvictim")
    client, tokens = http_login(web2, "wsvictim")
    _client2, tokens2 = http_login(web2, "wsvictim")
    url = f"{web2.ws_url}/ws/rooms/{room_id}/"
    admin = admin_client(web1, "operator")

    async def scenario() -> None:
        sockets = [
            await open_socket(f"{url}?access_token={tokens['access']}"),
            await open_socket(url, subprotocols=["chattalk", f"bearer.{tokens2['access']}"]),
            await open_socket(url, additional_headers={"Cookie": f"sessionid={client.cookies['sessionid']}"}),
        ]
        for ws in sockets:
            await ping(ws)
        started = time.monotonic()
        response = await asyncio.to_thread(
            admin.post,
            "/admin/accounts/user/",
            data={
                "action": "deactivate_users",
                "_selected_action": [str(victim.pk)],
                "index": "0",
                "select_across": "0",
                "csrfmiddlewaretoken": admin.cookies["csrftoken"],
            },
        )
        assert response.status_code in (200, 302), response.text[:500]
        codes = await asyncio.gather(*(close_code(ws, REVOCATION_DEADLINE) for ws in sockets))
        assert codes == [4401, 4401, 4401]
        assert time.monotonic() - started < REVOCATION_DEADLINE
        assert await refused_with(f"{url}?access_token={tokens2['access']}") == 4401

    asyncio.run(scenario())
    victim.refresh_from_db()
    assert not victim.is_active
    refresh = httpx.post(f"{web1.http_url}/api/auth/refresh", json={"refresh": tokens["refresh"]})
    assert refresh.status_code == 401


# --- password change and token families -----------------------------------------------------------------
NEW_PASSWORD = "Brand-New-Battery-77"


@pytest.mark.redis
@socket_test
def test_a_password_set_in_the_admin_form_closes_the_users_token_and_session_sockets_on_every_process_within_5_s(
    server_factory,
):
    from django.test import Client

    web1, web2 = server_factory(name="web1"), server_factory(name="web2")
    operator = User.objects.create_user(username="pwoperator", password=PASSWORD, is_staff=True, is_superuser=True)
    victim, room_id = make_member("wspwvictim")
    client, tokens = http_login(web1, "wspwvictim")
    cookie = {"Cookie": f"sessionid={client.cookies['sessionid']}"}
    admin = Client()
    admin.force_login(operator)

    async def scenario() -> None:
        sockets = []
        for server in (web1, web2):
            url = f"{server.ws_url}/ws/rooms/{room_id}/"
            sockets += [
                await open_socket(f"{url}?access_token={tokens['access']}"),
                await open_socket(url, additional_headers=cookie),
            ]
        for ws in sockets:
            await ping(ws)
        started = time.monotonic()
        response = await asyncio.to_thread(
            admin.post,
            f"/admin/accounts/user/{victim.pk}/password/",
            {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
        )
        assert response.status_code == 302, response.content[:2000]
        codes = await asyncio.gather(*(close_code(ws, REVOCATION_DEADLINE) for ws in sockets))
        assert codes == [4401] * 4
        assert time.monotonic() - started < REVOCATION_DEADLINE
        url = f"{web2.ws_url}/ws/rooms/{room_id}/"
        assert await refused_with(f"{url}?access_token={tokens['access']}") == 4401
        assert await refused_with(url, additional_headers=cookie) == 4401

    asyncio.run(scenario())
    refresh = httpx.post(f"{web2.http_url}/api/auth/refresh", json={"refresh": tokens["refresh"]})
    assert refresh.status_code == 401
    me = httpx.get(f"{web2.http_url}/api/auth/me", headers={"Authorization": f"Bearer {tokens['access']}"})
    assert me.status_code == 401 and me.json()["code"] == "token_revoked"


@socket_test
def test_a_password_change_whose_close_event_was_lost_is_caught_by_the_periodic_recheck(server_factory, monkeypatch):
    server = server_factory()
    victim, room_id = make_member("wspwlost")
    client, tokens = http_login(server, "wspwlost")
    _other_client, other = http_login(server, "wspwlost")
    url = f"{server.ws_url}/ws/rooms/{room_id}/"
    monkeypatch.setattr("accounts.services.publish_user_revoked", lambda *args, **kwargs: None)

    async def scenario() -> None:
        by_token = await open_socket(f"{url}?access_token={tokens['access']}")
        by_session = await open_socket(url, additional_headers={"Cookie": f"sessionid={client.cookies['sessionid']}"})
        for ws in (by_token, by_session):
            await ping(ws)

        def change() -> None:
            victim.set_password(NEW_PASSWORD)
            victim.save()

        await asyncio.to_thread(change)
        # No event: the re-check (every REVOCATION_CHECK_SECONDS) must find the new generation and session hash.
        codes = await asyncio.gather(close_code(by_token, 8.0), close_code(by_session, 8.0))
        assert codes == [4401, 4401]
        assert await refused_with(f"{url}?access_token={other['access']}") == 4401

    asyncio.run(scenario())


@socket_test
def test_a_socket_of_a_token_family_whose_refresh_token_was_reused_is_closed_by_the_recheck(server_factory):
    server = server_factory()
    _user, room_id = make_member("wsfamily")
    _client, a = http_login(server, "wsfamily")
    _other_client, other = http_login(server, "wsfamily")  # another login: another family
    url = f"{server.ws_url}/ws/rooms/{room_id}/"

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
            b = (await http.post("/api/auth/refresh", json={"refresh": a["refresh"]})).json()
            from_b = await open_socket(f"{url}?access_token={b['access']}")
            other_family = await open_socket(f"{url}?access_token={other['access']}")
            for ws in (from_b, other_family):
                await ping(ws)
            reuse = await http.post("/api/auth/refresh", json={"refresh": a["refresh"]})
            assert reuse.status_code == 401 and reuse.json()["code"] == "token_reused"
            assert await close_code(from_b, 8.0) == 4401
            await ping(other_family)
            await other_family.close()
            assert await refused_with(f"{url}?access_token={b['access']}") == 4401

    asyncio.run(scenario())
