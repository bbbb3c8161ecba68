"""The rooms REST edge against the contract: shapes, pagination, permissions, and every refusal's body."""

from __future__ import annotations

from typing import Any

import pytest

from rooms.models import Membership, Room
from rooms.services import create_room, join_room

pytestmark = pytest.mark.django_db

ROOM_KEYS = {
    "id", "title", "owner", "max_personnel", "personnel", "created_at", "last_seq",
    "kind", "visibility", "history_visibility", "my_role",
}


def test_create_room_makes_the_creator_its_first_member(make_user: Any, client_for: Any) -> None:
    alice = make_user("alice")
    response = client_for(alice).post("/api/rooms", {"title": "  Lobby  ", "max_personnel": 5}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == ROOM_KEYS
    assert body["title"] == "Lobby"
    assert body["owner"] == {"id": alice.pk, "username": "alice", "nickname": "Alice"}
    assert body["personnel"] == 1 and body["max_personnel"] == 5
    assert body["last_seq"] == 1  # the creator's ENTER message
    assert (body["kind"], body["visibility"], body["history_visibility"], body["my_role"]) == (
        "room", "public", "all", "owner"
    )
    assert Membership.objects.filter(room_id=body["id"], user=alice, is_active=True).exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"title": "", "max_personnel": 5}, "title"),
        ({"title": "   ", "max_personnel": 5}, "title"),
        ({"title": "x" * 101, "max_personnel": 5}, "title"),
        ({"title": 12, "max_personnel": 5}, "title"),
        ({"max_personnel": 5}, "title"),
        ({"title": "ok", "max_personnel": 1}, "max_personnel"),
        ({"title": "ok", "max_personnel": 10001}, "max_personnel"),
        ({"title": "ok", "max_personnel": "many"}, "max_personnel"),
        ({"title": "ok", "max_personnel": 3.5}, "max_personnel"),
        ({"title": "ok", "max_personnel": True}, "max_personnel"),
        ({"title": "ok", "max_personnel": None}, "max_personnel"),
        ({"title": "ok"}, "max_personnel"),
    ],
)
def test_create_room_refuses_bad_input_with_the_field_named(
    make_user: Any, client_for: Any, payload: dict[str, Any], field: str
) -> None:
    response = client_for(make_user()).post("/api/rooms", payload, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["fields"] and body["detail"]
    assert not Room.objects.exists()


def test_create_room_accepts_the_limits_of_the_ranges(make_user: Any, client_for: Any) -> None:
    client = client_for(make_user())
    assert client.post("/api/rooms", {"title": "x" * 100, "max_personnel": 2}, format="json").status_code == 201
    assert client.post("/api/rooms", {"title": "y", "max_personnel": "10000"}, format="json").status_code == 201


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"title"', b"{not json"])
def test_create_room_with_a_body_that_is_not_an_object_is_a_400(make_user: Any, client_for: Any, raw: bytes) -> None:
    response = client_for(make_user()).post("/api/rooms", raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] in {"validation_error", "malformed_request"}


def test_rooms_need_authentication(db: None, client_for: Any) -> None:
    response = client_for(None).get("/api/rooms")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert client_for(None).post("/api/rooms/1/join").status_code == 401


def test_list_is_paginated_newest_first_and_searchable(make_user: Any, client_for: Any) -> None:
    owner = make_user()
    for i in range(25):
        create_room(owner=owner, title=f"{'Cats' if i % 5 == 0 else 'dogs'} {i}", max_personnel=10)
    client = client_for(make_user())
    first = client.get("/api/rooms").json()
    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] == 25 and len(first["results"]) == 20 and first["previous"] is None
    assert first["results"][0]["title"] == "dogs 24" and set(first["results"][0]) == ROOM_KEYS
    second = client.get("/api/rooms", {"page": 2}).json()
    assert len(second["results"]) == 5 and second["next"] is None
    ids = [r["id"] for r in first["results"] + second["results"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 25
    found = client.get("/api/rooms", {"search": "cAtS"}).json()
    assert [r["title"] for r in found["results"]] == ["Cats 20", "Cats 15", "Cats 10", "Cats 5", "Cats 0"]
    assert client.get("/api/rooms", {"search": "nothing-like-this"}).json()["count"] == 0


def test_a_page_out_of_range_is_a_404_in_the_contract_body(make_user: Any, client_for: Any) -> None:
    response = client_for(make_user()).get("/api/rooms", {"page": "9"})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("page", ["abc", "0"])
def test_a_page_that_is_not_a_page_number_is_a_400_validation_error(make_user: Any, client_for: Any, page: str) -> None:
    response = client_for(make_user()).get("/api/rooms", {"page": page})
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error" and list(response.json()["fields"]) == ["page"]


def test_detail_shows_the_room(make_user: Any, client_for: Any) -> None:
    room = create_room(owner=make_user(), title="Detail", max_personnel=3)
    body = client_for(make_user()).get(f"/api/rooms/{room.pk}").json()
    assert body["id"] == room.pk and body["personnel"] == 1 and body["max_personnel"] == 3


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("get", ""), ("patch", ""), ("delete", ""), ("post", "/join"), ("post", "/leave")],
)
@pytest.mark.parametrize("room_id", ["999999", "99999999999999999999"])
def test_unknown_room_is_a_404_not_found(
    make_user: Any, client_for: Any, method: str, suffix: str, room_id: str
) -> None:
    response = getattr(client_for(make_user(is_staff=True)), method)(
        f"/api/rooms/{room_id}{suffix}", {"title": "x"}, format="json"
    )
    assert response.status_code == 404, response.content
    assert response.json()["code"] == "not_found"


def test_only_owner_or_staff_may_update_or_delete(make_user: Any, client_for: Any) -> None:
    owner, stranger, staff = make_user(), make_user(), make_user(is_staff=True)
    room = create_room(owner=owner, title="Mine", max_personnel=5)
    join_room(room_id=room.pk, user=stranger)  # a member, but not the owner
    for method in ("patch", "delete"):
        response = getattr(client_for(stranger), method)(f"/api/rooms/{room.pk}", {"title": "Hijack"}, format="json")
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
    assert Room.objects.get(pk=room.pk).title == "Mine"
    response = client_for(owner).patch(f"/api/rooms/{room.pk}", {"title": "Ours", "max_personnel": 7}, format="json")
    assert response.status_code == 200
    assert response.json()["title"] == "Ours" and response.json()["max_personnel"] == 7
    response = client_for(staff).patch(f"/api/rooms/{room.pk}", {"max_personnel": 2}, format="json")
    assert response.status_code == 200 and response.json()["max_personnel"] == 2
    assert client_for(staff).delete(f"/api/rooms/{room.pk}").status_code == 204
    assert not Room.objects.filter(pk=room.pk).exists()
    assert not Membership.objects.filter(room_id=room.pk).exists()


def test_owner_deletes_own_room(make_user: Any, client_for: Any) -> None:
    owner = make_user()
    room = create_room(owner=owner, title="Gone soon", max_personnel=5)
    assert client_for(owner).delete(f"/api/rooms/{room.pk}").status_code == 204
    assert client_for(owner).get(f"/api/rooms/{room.pk}").status_code == 404


def test_max_personnel_cannot_go_below_personnel(make_user: Any, client_for: Any) -> None:
    owner = make_user()
    room = create_room(owner=owner, title="Busy", max_personnel=5)
    for _ in range(2):
        join_room(room_id=room.pk, user=make_user())
    response = client_for(owner).patch(f"/api/rooms/{room.pk}", {"max_personnel": 2}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "max_personnel_below_personnel"
    assert Room.objects.get(pk=room.pk).max_personnel == 5
    response = client_for(owner).patch(f"/api/rooms/{room.pk}", {"max_personnel": 3}, format="json")
    assert response.status_code == 200 and response.json()["max_personnel"] == 3


@pytest.mark.parametrize(("payload", "field"), [({"title": ""}, "title"), ({"max_personnel": "x"}, "max_personnel")])
def test_update_refuses_bad_input(make_user: Any, client_for: Any, payload: dict[str, Any], field: str) -> None:
    owner = make_user()
    room = create_room(owner=owner, title="Keep", max_personnel=5)
    response = client_for(owner).patch(f"/api/rooms/{room.pk}", payload, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error" and field in response.json()["fields"]


def test_join_and_leave_are_idempotent_and_keep_the_count(make_user: Any, client_for: Any) -> None:
    room = create_room(owner=make_user(), title="Door", max_personnel=3)
    bob = client_for(make_user())
    for _ in range(2):
        response = bob.post(f"/api/rooms/{room.pk}/join")
        assert response.status_code == 200
        assert response.json()["member"] is True and response.json()["room"]["personnel"] == 2
        assert set(response.json()["room"]) == ROOM_KEYS
    for _ in range(2):
        response = bob.post(f"/api/rooms/{room.pk}/leave")
        assert response.status_code == 200
        assert response.json() == {"room": response.json()["room"], "member": False}
        assert response.json()["room"]["personnel"] == 1
    # Leaving a room one never joined is a no-op too.
    response = client_for(make_user()).post(f"/api/rooms/{room.pk}/leave")
    assert response.status_code == 200 and response.json()["room"]["personnel"] == 1


def test_a_full_room_answers_409_room_full(make_user: Any, client_for: Any) -> None:
    room = create_room(owner=make_user(), title="Tiny", max_personnel=2)
    assert client_for(make_user()).post(f"/api/rooms/{room.pk}/join").status_code == 200
    late = make_user()
    response = client_for(late).post(f"/api/rooms/{room.pk}/join")
    assert response.status_code == 409
    assert response.json()["code"] == "room_full"
    assert not Membership.objects.filter(room=room, user=late, is_active=True).exists()
    assert Room.objects.get(pk=room.pk).personnel == 2


def test_a_member_rejoining_a_full_room_is_still_a_member(make_user: Any, client_for: Any) -> None:
    owner = make_user()
    room = create_room(owner=owner, title="Tiny", max_personnel=2)
    join_room(room_id=room.pk, user=make_user())
    response = client_for(owner).post(f"/api/rooms/{room.pk}/join")
    assert response.status_code == 200 and response.json()["member"] is True


def test_malformed_json_is_a_400_malformed_request(make_user: Any, client_for: Any) -> None:
    response = client_for(make_user()).post("/api/rooms", b"{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"


@pytest.mark.parametrize("path", ["members", "messages"])
def test_a_non_member_reading_members_or_history_gets_403_and_an_unknown_room_404(
    make_user: Any, client_for: Any, path: str
) -> None:
    owner, stranger, former = make_user(), make_user(), make_user()
    room = create_room(owner=owner, title="Closed", max_personnel=5)
    join_room(room_id=room.pk, user=former)
    client_for(former).post(f"/api/rooms/{room.pk}/leave")
    for outsider in (stranger, former):
        response = client_for(outsider).get(f"/api/rooms/{room.pk}/{path}")
        assert response.status_code == 403
        assert response.json()["code"] == "not_member" and response.json()["detail"]
    assert client_for(owner).get(f"/api/rooms/{room.pk}/{path}").status_code == 200
    response = client_for(owner).get(f"/api/rooms/424242/{path}")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


# --- rate limits ----------------------------------------------------------------------------------------------
def test_room_creation_is_limited_per_user_with_429_rate_limited_and_retry_after(
    make_user: Any, client_for: Any, settings: Any
) -> None:
    settings.ROOMS_CREATED_PER_HOUR = 3
    alice, bob = make_user(), make_user()
    client = client_for(alice)
    answers = [client.post("/api/rooms", {"title": f"flood {n}", "max_personnel": 5}, format="json") for n in range(5)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429, 429]
    assert answers[3].json()["code"] == "rate_limited"
    assert 1 <= int(answers[3]["Retry-After"]) <= 3600
    assert Room.objects.filter(owner=alice).count() == 3
    assert client_for(bob).post("/api/rooms", {"title": "bob's", "max_personnel": 5}, format="json").status_code == 201


@pytest.mark.parametrize("path", ["join", "leave"])
def test_joins_and_leaves_are_limited_per_user(make_user: Any, client_for: Any, settings: Any, path: str) -> None:
    settings.ROOM_WRITES_PER_MINUTE = 3
    room = create_room(owner=make_user(), title="busy door", max_personnel=5)
    client = client_for(make_user())
    statuses = [client.post(f"/api/rooms/{room.pk}/{path}").status_code for _ in range(7)]
    # Fixed windows: a burst that straddles a window's end gets at most two windows' worth.
    assert statuses.count(200) <= 6 and statuses.count(429) >= 1 and set(statuses) == {200, 429}


def test_updates_of_rooms_are_limited_per_user(make_user: Any, client_for: Any, settings: Any) -> None:
    settings.ROOM_WRITES_PER_MINUTE = 2
    owner = make_user()
    room = create_room(owner=owner, title="renamed often", max_personnel=5)
    client = client_for(owner)
    statuses = [
        client.patch(f"/api/rooms/{room.pk}", {"title": f"name {n}"}, format="json").status_code for n in range(5)
    ]
    assert statuses.count(200) <= 4 and 429 in statuses
