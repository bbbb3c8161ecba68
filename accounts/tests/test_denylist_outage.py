"""When the token denylist (the cache) cannot be read, tokens fail closed with a retryable answer."""

from __future__ import annotations

import asyncio

import pytest
from django.test import Client, override_settings
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from core.testing import free_port
from messaging.testing import ChatClient
from rooms.services import create_room


def unreachable_redis_cache() -> dict:
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }


@pytest.mark.django_db
def test_rest_answers_503_unavailable_not_500_when_the_denylist_is_unreachable():
    user = User.objects.create_user(username="outage", password="pw-Secret-123")
    token = AccessToken.for_user(user)
    with override_settings(CACHES=unreachable_redis_cache()):
        response = Client().get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"
    assert Client().get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_socket_closes_with_1013_when_its_token_cannot_be_checked(server_factory):
    user = User.objects.create_user(username="outage-ws", password="pw-Secret-123")
    room = create_room(owner=user, title="outage", max_personnel=5)
    # A server whose cache (the denylist) points at a closed port; the database is fine.
    server = server_factory(env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})

    async def scenario() -> int | None:
        client = await ChatClient(server.ws_url, room.pk, str(AccessToken.for_user(user))).connect()
        return await client.wait_closed(timeout=15)

    assert asyncio.run(scenario()) == 1013
