"""GraphQL of rooms against the contract: auth, rooms/room/myRooms, mutations as data, members-only
fields, agreement with REST, and the constant query count of a room listing."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.services import mark_read, send_message
from rooms.models import Membership, Room
from rooms.services import create_room, join_room, leave_room
from rooms.tests.conftest import bearer_client

pytestmark = pytest.mark.django_db


def gql(user: Any, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = bearer_client(user).post("/graphql", {"query": query, "variables": variables or {}}, format="json")
    assert response.status_code in (200, 400), response.content
    return response.json()


def codes(result: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in result.get("errors", [])]


ROOM_QUERY = """query($id: Int!) { room(id: $id) { id title maxPersonnel personnel lastSeq createdAt isMember
  owner { id username nickname } } }"""
JOIN = "mutation($id: Int!) { joinRoom(roomId: $id) { ok error room { personnel maxPersonnel } } }"
LEAVE = "mutation($id: Int!) { leaveRoom(roomId: $id) { ok error room { personnel maxPersonnel } } }"


def test_queries_need_authentication_and_mutations_answer_not_authenticated(make_user: Any) -> None:
    room = create_room(owner=make_user(), title="Private", max_personnel=3)
    for query in ("{ rooms { edges { node { id } } } }", "{ myRooms { id } }", f"{{ room(id: {room.pk}) {{ id }} }}"):
        result = gql(None, query)
        assert "not_authenticated" in codes(result), result
    result = gql(None, JOIN, {"id": room.pk})
    assert result["data"]["joinRoom"] == {"ok": False, "error": "not_authenticated", "room": None}
    assert Room.objects.get(pk=room.pk).personnel == 1


def test_room_shows_its_fields_and_an_unknown_room_is_not_found(make_user: Any) -> None:
    alice = make_user("gql-alice")
    room = create_room(owner=alice, title="Garden", max_personnel=4)
    data = gql(alice, ROOM_QUERY, {"id": room.pk})["data"]["room"]
    assert data["id"] == room.pk and data["title"] == "Garden" and data["isMember"] is True
    assert (data["maxPersonnel"], data["personnel"], data["lastSeq"]) == (4, 1, 1)
    assert data["owner"] == {"id": alice.pk, "username": "gql-alice", "nickname": "Gql-Alice"}
    result = gql(alice, ROOM_QUERY, {"id": 987654})
    assert result["data"]["room"] is None and codes(result) == ["not_found"]


def test_rooms_is_a_relay_connection_paged_by_cursor_with_search(make_user: Any) -> None:
    owner = make_user()
    made = [create_room(owner=owner, title=f"{'Blue' if i % 2 else 'Red'} {i}", max_personnel=5) for i in range(5)]
    query = """query($first: Int, $after: String, $search: String) {
      rooms(first: $first, after: $after, search: $search) {
        edges { cursor node { id title } } pageInfo { hasNextPage endCursor } } }"""
    seen: list[int] = []
    after = None
    while True:
        page = gql(owner, query, {"first": 2, "after": after})["data"]["rooms"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [room.pk for room in reversed(made)]
    blue = gql(owner, query, {"search": "blue"})["data"]["rooms"]
    assert [edge["node"]["title"] for edge in blue["edges"]] == ["Blue 3", "Blue 1"]
    assert blue["pageInfo"]["hasNextPage"] is False
    for bad in ({"first": 0}, {"first": 101}):
        assert codes(gql(owner, query, bad)) == ["validation_error"]
    assert codes(gql(owner, query, {"after": "not-a-cursor"})) == ["invalid_cursor"]


def test_join_and_leave_mutations_answer_refusals_as_data(make_user: Any) -> None:
    room = create_room(owner=make_user(), title="Pair", max_personnel=2)
    bob, carol = make_user(), make_user()
    joined = gql(bob, JOIN, {"id": room.pk})["data"]["joinRoom"]
    assert joined == {"ok": True, "error": None, "room": {"personnel": 2, "maxPersonnel": 2}}
    assert gql(bob, JOIN, {"id": room.pk})["data"]["joinRoom"]["ok"] is True  # idempotent
    full = gql(carol, JOIN, {"id": room.pk})
    assert "errors" not in full
    assert full["data"]["joinRoom"] == {"ok": False, "error": "room_full", "room": {"personnel": 2, "maxPersonnel": 2}}
    assert gql(carol, JOIN, {"id": 424242})["data"]["joinRoom"] == {"ok": False, "error": "not_found", "room": None}
    left = gql(bob, LEAVE, {"id": room.pk})["data"]["leaveRoom"]
    assert left == {"ok": True, "error": None, "room": {"personnel": 1, "maxPersonnel": 2}}
    assert gql(bob, LEAVE, {"id": room.pk})["data"]["leaveRoom"]["room"]["personnel"] == 1  # idempotent
    assert gql(bob, LEAVE, {"id": 424242})["data"]["leaveRoom"]["error"] == "not_found"


def test_graphql_and_rest_agree(make_user: Any, client_for: Any) -> None:
    owner, bob, carol = make_user(), make_user(), make_user()
    room = create_room(owner=owner, title="Both ways", max_personnel=3)
    assert client_for(bob).post(f"/api/rooms/{room.pk}/join").status_code == 200
    assert gql(carol, JOIN, {"id": room.pk})["data"]["joinRoom"]["ok"] is True
    rest = client_for(owner).get(f"/api/rooms/{room.pk}").json()
    graph = gql(owner, ROOM_QUERY, {"id": room.pk})["data"]["room"]
    assert (
        (rest["personnel"], rest["max_personnel"], rest["last_seq"], rest["title"])
        == (
            graph["personnel"],
            graph["maxPersonnel"],
            graph["lastSeq"],
            graph["title"],
        )
        == (3, 3, 3, "Both ways")
    )
    assert rest["owner"] == graph["owner"]
    # The same refusal from both edges.
    dave = make_user()
    assert client_for(dave).post(f"/api/rooms/{room.pk}/join").json()["code"] == "room_full"
    assert gql(dave, JOIN, {"id": room.pk})["data"]["joinRoom"]["error"] == "room_full"
    # Listing and unread agree too.
    send_message(room_id=room.pk, sender=bob, client_id="m1", body="hello")
    send_message(room_id=room.pk, sender=carol, client_id="m2", body="hi")
    rest_mine = client_for(owner).get("/api/me/rooms").json()["results"]
    graph_mine = gql(owner, "{ myRooms { id unread personnel } }")["data"]["myRooms"]
    assert [(r["id"], r["unread"], r["personnel"]) for r in rest_mine] == [
        (r["id"], r["unread"], r["personnel"]) for r in graph_mine
    ]
    assert graph_mine[0]["unread"] == 2
    rest_ids = [r["id"] for r in client_for(owner).get("/api/rooms").json()["results"]]
    graph_ids = [e["node"]["id"] for e in gql(owner, "{ rooms { edges { node { id } } } }")["data"]["rooms"]["edges"]]
    assert rest_ids == graph_ids


def test_my_rooms_lists_only_active_memberships_with_unread(make_user: Any) -> None:
    me, other = make_user(), make_user()
    mine = create_room(owner=me, title="Mine", max_personnel=5)
    left = create_room(owner=other, title="Left", max_personnel=5)
    create_room(owner=other, title="Not mine", max_personnel=5)
    join_room(room_id=mine.pk, user=other)
    join_room(room_id=left.pk, user=me)
    leave_room(room_id=left.pk, user=me)
    for i in range(3):
        send_message(room_id=mine.pk, sender=other, client_id=f"c{i}", body=f"msg {i}")
    send_message(room_id=mine.pk, sender=me, client_id="own", body="mine do not count")
    result = gql(me, "{ myRooms { title unread isMember } rooms { edges { node { title unread } } } }")["data"]
    assert result["myRooms"] == [{"title": "Mine", "unread": 3, "isMember": True}]
    unread = {e["node"]["title"]: e["node"]["unread"] for e in result["rooms"]["edges"]}
    assert unread == {"Mine": 3, "Left": None, "Not mine": None}


def test_participants_and_missed_messages_are_for_members_only(make_user: Any) -> None:
    owner, bob, stranger = make_user("p-owner"), make_user("p-bob"), make_user("p-stranger")
    room = create_room(owner=owner, title="Members", max_personnel=5)
    join_room(room_id=room.pk, user=bob)
    query = """query($id: Int!) { room(id: $id) { title participants { username nickname connected connections
      leftAt lastSeenAt } } missedMessages(roomId: $id) { seq kind body sender { username } } }"""
    result = gql(stranger, query, {"id": room.pk})
    assert sorted(codes(result)) == ["not_member", "not_member"]
    assert result["data"]["room"] == {"title": "Members", "participants": None}
    members = gql(owner, query, {"id": room.pk})
    assert "errors" not in members, members
    participants = members["data"]["room"]["participants"]
    assert [p["username"] for p in participants] == ["p-bob", "p-owner"]
    assert participants[0] == {
        "username": "p-bob",
        "nickname": "P-Bob",
        "connected": False,
        "connections": 0,
        "leftAt": None,
        "lastSeenAt": None,
    }
    assert members["data"]["missedMessages"] == [
        {"seq": 2, "kind": "ENTER", "body": "", "sender": {"username": "p-bob"}}
    ]


def test_missed_messages_are_those_after_the_read_position_ascending(make_user: Any) -> None:
    owner, bob = make_user(), make_user()
    room = create_room(owner=owner, title="Catch up", max_personnel=5)
    join_room(room_id=room.pk, user=bob)  # seq 2
    sent = [send_message(room_id=room.pk, sender=owner, client_id=f"k{i}", body=f"b{i}").message for i in range(5)]
    mark_read(room_id=room.pk, user=bob, seq=sent[1]["seq"])
    query = "query($id: Int!, $limit: Int) { missedMessages(roomId: $id, limit: $limit) { id seq kind body } }"
    missed = gql(bob, query, {"id": room.pk})["data"]["missedMessages"]
    assert [m["body"] for m in missed] == ["b2", "b3", "b4"]
    assert [m["seq"] for m in missed] == sorted(m["seq"] for m in missed)
    assert [m["body"] for m in gql(bob, query, {"id": room.pk, "limit": 2})["data"]["missedMessages"]] == ["b2", "b3"]
    for limit in (0, 201):
        assert codes(gql(bob, query, {"id": room.pk, "limit": limit})) == ["validation_error"]
    assert codes(gql(bob, query, {"id": 777777})) == ["not_found"]


def test_leave_time_is_null_until_the_caller_leaves(make_user: Any) -> None:
    owner, bob = make_user(), make_user()
    room = create_room(owner=owner, title="Exit", max_personnel=5)
    query = "query($id: Int!) { leaveTime(roomId: $id) }"
    assert gql(bob, query, {"id": room.pk})["data"]["leaveTime"] is None
    join_room(room_id=room.pk, user=bob)
    assert gql(bob, query, {"id": room.pk})["data"]["leaveTime"] is None
    leave_room(room_id=room.pk, user=bob)
    left_at = Membership.objects.get(room=room, user=bob).left_at
    assert left_at is not None
    assert gql(bob, query, {"id": room.pk})["data"]["leaveTime"] == left_at.isoformat()
    assert codes(gql(bob, query, {"id": 555555})) == ["not_found"]


LISTING = """query($first: Int) { rooms(first: $first) { edges { node { id title personnel maxPersonnel lastSeq
  isMember unread owner { username } participants { username connected connections leftAt } } }
  pageInfo { hasNextPage endCursor } } }"""


def _listing_queries(user: Any, first: int) -> int:
    client = bearer_client(user)
    with CaptureQueriesContext(connection) as captured:
        response = client.post("/graphql", {"query": LISTING, "variables": {"first": first}}, format="json")
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    edges = body["data"]["rooms"]["edges"]
    assert len(edges) == first
    assert all(len(edge["node"]["participants"]) == 3 for edge in edges)
    return len(captured)


def test_listing_rooms_with_participants_costs_a_constant_number_of_queries(make_user: Any, settings: Any) -> None:
    # A page of rooms with participants is over the cost limit (each room could seat 10,000); this test
    # pins the batching behind it, so the limit is lifted here.
    settings.GRAPHQL_MAX_COST = 10**9
    me, a, b = make_user(), make_user(), make_user()
    for i in range(12):
        room = create_room(owner=me, title=f"Room {i}", max_personnel=10)
        join_room(room_id=room.pk, user=a)
        join_room(room_id=room.pk, user=b)
    two, twelve = _listing_queries(me, 2), _listing_queries(me, 12)
    assert two == twelve
    # The pin: the caller (1), the page of rooms with owners (1), the caller's memberships (1), unread (1),
    # participants: the members with their users (1), plus the ORM presence store's two reads when presence
    # lives in the database (the MongoDB store reads no SQL).
    store_queries = 2 if settings.PRESENCE_BACKEND == "orm" else 0
    assert twelve == 5 + store_queries, twelve


def test_fields_after_a_mutation_in_the_same_request_see_its_effect(make_user: Any) -> None:
    room = create_room(owner=make_user(), title="Flip", max_personnel=5)
    bob = make_user()
    query = """mutation($id: Int!) { a: joinRoom(roomId: $id) { room { isMember unread personnel } }
      b: leaveRoom(roomId: $id) { room { isMember unread personnel } } }"""
    data = gql(bob, query, {"id": room.pk})["data"]
    assert data["a"]["room"] == {"isMember": True, "unread": 0, "personnel": 2}
    assert data["b"]["room"] == {"isMember": False, "unread": None, "personnel": 1}


def test_join_and_leave_mutations_share_the_per_user_write_limit_and_answer_rate_limited(
    make_user: Any, settings: Any
) -> None:
    settings.ROOM_WRITES_PER_MINUTE = 2
    room = create_room(owner=make_user(), title="Revolving", max_personnel=5)
    bob = make_user()
    errors = [
        gql(bob, mutation, {"id": room.pk})["data"][name]["error"]
        for mutation, name in [(JOIN, "joinRoom"), (LEAVE, "leaveRoom")] * 3
    ]
    # Fixed windows: a burst that straddles a window's end gets at most two windows' worth.
    assert "rate_limited" in errors and errors.count(None) <= 4
