"""REST and GraphQL joins racing through real server processes keep the limit exact, and every refusal
reaches the client in its edge's shape: 409 `room_full` from REST, `error: "room_full"` from GraphQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from rooms.models import Membership, Room
from rooms.services import create_room

JOIN = "mutation($id: Int!) { joinRoom(roomId: $id) { ok error room { personnel maxPersonnel } } }"


@pytest.mark.django_db(transaction=True)
def test_rest_and_graphql_joins_racing_on_two_processes_admit_exactly_the_free_seats(server_factory: Any) -> None:
    servers = [server_factory(name="rooms-a"), server_factory(name="rooms-b")]
    User.objects.bulk_create([User(username=f"edge{i}", password="!") for i in range(41)])
    owner, *users = User.objects.filter(username__startswith="edge").order_by("id")
    room = create_room(owner=owner, title="Edges", max_personnel=15)

    def join(index_user: tuple[int, User]) -> tuple[str, int, Any]:
        index, user = index_user
        base = servers[index % 2].http_url
        headers = {"Authorization": f"Bearer {AccessToken.for_user(user)}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            if index % 4 < 2:
                response = client.post(f"/api/rooms/{room.pk}/join")
                return "rest", response.status_code, response.json()
            response = client.post("/graphql", json={"query": JOIN, "variables": {"id": room.pk}})
            return "graphql", response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(join, enumerate(users)))

    admitted, refused = [], []
    for edge, status, body in results:
        if edge == "rest":
            assert status in (200, 409), body
            (admitted if status == 200 else refused).append(body)
            if status == 409:
                assert body["code"] == "room_full"
            else:
                assert body["member"] is True and body["room"]["personnel"] <= 15
        else:
            assert status == 200 and "errors" not in body, body
            payload = body["data"]["joinRoom"]
            (admitted if payload["ok"] else refused).append(payload)
            if not payload["ok"]:
                assert payload["error"] == "room_full"
                assert payload["room"] == {"personnel": 15, "maxPersonnel": 15}
    assert len(admitted) == 14 and len(refused) == 40 - 14
    room.refresh_from_db()
    assert room.personnel == 15
    assert Membership.objects.filter(room=room, is_active=True).count() == 15
    assert Room.objects.get(pk=room.pk).personnel == 15


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_room_creations_racing_on_two_processes_count_against_one_per_user_limit(server_factory: Any) -> None:
    env = {"ROOMS_CREATED_PER_HOUR": "4"}
    servers = [server_factory(env=env, name="limit-a"), server_factory(env=env, name="limit-b")]
    user = User.objects.create_user(username="flooder", password="pw-Secret-123")
    headers = {"Authorization": f"Bearer {AccessToken.for_user(user)}"}

    def create(index: int) -> tuple[int, Any]:
        with httpx.Client(base_url=servers[index % 2].http_url, headers=headers, timeout=60) as client:
            response = client.post("/api/rooms", json={"title": f"flood {index}", "max_personnel": 5})
            return response.status_code, response

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(create, range(12)))

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 4 + [429] * 8, statuses
    refused = next(response for status, response in results if status == 429)
    assert refused.json()["code"] == "rate_limited" and int(refused.headers["Retry-After"]) >= 1
    assert Room.objects.filter(owner=user).count() == 4
