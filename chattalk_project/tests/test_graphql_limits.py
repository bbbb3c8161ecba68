"""The GraphQL endpoint's limits: a query nested deeper than 10 or larger than 20 KiB is refused with an
error and a code, never a 500; GraphQL's standard validation still runs; GraphiQL only when DEBUG."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from graphql import get_introspection_query

pytestmark = pytest.mark.django_db


def post(query: str, client: Client | None = None) -> Any:
    return (client or Client()).post("/graphql", {"query": query}, content_type="application/json")


def nested(depth: int, field: str = "a") -> str:
    """`{ a { a { ... a } } }` with `depth` field levels."""
    return "{ " + " { ".join([field] * depth) + " }" * depth


def depth_codes(response: Any) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in response.json().get("errors", [])]


def test_a_query_nested_deeper_than_10_is_refused_with_query_too_deep() -> None:
    at_limit, over = post(nested(10)), post(nested(11))
    # Both are invalid for the schema (no field `a`), but only the deeper one breaks the depth limit.
    assert at_limit.status_code == 400 and "query_too_deep" not in depth_codes(at_limit)
    assert over.status_code == 400 and "query_too_deep" in depth_codes(over)


def test_depth_counts_through_fragments_and_refuses_fragment_cycles() -> None:
    fragment_chain = "query Q { ...F0 } " + " ".join(
        f"fragment F{i} on Query {{ a {{ ...F{i + 1} }} }}" for i in range(11)
    )
    fragment_chain += " fragment F11 on Query { a }"
    assert "query_too_deep" in depth_codes(post(fragment_chain))
    cycle = "query Q { ...A } fragment A on Query { a { ...B } } fragment B on Query { b { ...A } }"
    response = post(cycle)
    assert response.status_code == 400 and "query_too_deep" in depth_codes(response)
    # Many sibling spreads of the same fragments are checked once each, not once per path.
    wide = "query Q { " + " ".join(f"x{i}: a {{ ...F }}" for i in range(50)) + " } "
    wide += "fragment F on Query { " + " ".join(f"y{i}: a {{ ...G }}" for i in range(50)) + " } "
    wide += "fragment G on Query { " + " ".join(f"z{i}: b" for i in range(50)) + " }"
    assert post(wide).status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "{ ...Missing }",
        "{ rooms { edges { node { ...Missing } } } }",
        "{ " * 3000 + "}" * 3000,
        "... on Query " * 1500 + "{ health { ok } }",
        "query { health { ok } } query { health { ok } }",
        "{ health(nope: 1) { ok } }",
    ],
)
def test_malformed_or_pathological_queries_are_errors_not_500(query: str) -> None:
    response = post(query)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["errors"]


def test_the_standard_validation_rules_still_run() -> None:
    response = post("{ health { ok doesNotExist } }")
    assert response.status_code == 400
    assert "doesNotExist" in response.json()["errors"][0]["message"]


def test_a_query_over_20_kib_is_refused_with_query_too_large() -> None:
    padding = "#" + "x" * (20 * 1024) + "\n"
    response = post(padding + "{ health { ok } }")
    assert response.status_code == 413
    assert depth_codes(response) == ["query_too_large"]
    response = Client().get("/graphql", {"query": padding + "{ health { ok } }"})
    assert response.status_code == 413


def test_a_huge_body_is_refused_before_it_is_read() -> None:
    body = json.dumps({"query": "{ health { ok } }", "pad": "x" * (3 * 1024 * 1024)})
    response = Client().post("/graphql", body, content_type="application/json")
    assert response.status_code == 413
    assert depth_codes(response) == ["query_too_large"]


def test_a_small_query_and_the_standard_introspection_query_pass() -> None:
    response = post("{ health { ok } }")
    assert response.status_code == 200 and response.json() == {"data": {"health": {"ok": True}}}
    introspection = post(get_introspection_query(descriptions=True))
    assert introspection.status_code == 200, introspection.content[:300]
    assert introspection.json()["data"]["__schema"]["queryType"]["name"] == "Query"


@pytest.mark.parametrize(
    "raw", ["{not json", "[]", '{"query": 12}', '{"query": "{ health { ok } }", "variables": "x"}']
)
def test_bad_request_bodies_are_4xx(raw: str) -> None:
    response = Client().post("/graphql", raw, content_type="application/json")
    assert 400 <= response.status_code < 500


def test_graphiql_is_served_only_when_debug(settings: Any) -> None:
    settings.DEBUG = True
    page = Client().get("/graphql", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"graphiql" in page.content.lower()
    settings.DEBUG = False
    page = Client().get("/graphql", HTTP_ACCEPT="text/html")
    assert page.status_code == 400 and b"graphiql" not in page.content.lower()


BIG_PAGE = "rooms(first: 100) { edges { node { id title personnel maxPersonnel unread isMember } } }"
PARTICIPANTS = "participants { username nickname connected connections leftAt lastSeenAt }"


def test_a_few_aliased_big_pages_with_participants_are_refused_with_query_too_expensive() -> None:
    page_with_participants = "rooms(first: 100) { edges { node { id title participants { username } } } }"
    response = post("{ " + " ".join(f"r{i}: {page_with_participants}" for i in range(3)) + " }")
    assert response.status_code == 400
    assert depth_codes(response) == ["query_too_expensive"]


def test_cost_counts_fragments_and_variable_page_sizes_at_their_maximum(settings: Any) -> None:
    settings.GRAPHQL_MAX_COST = 500
    fragment = " fragment page on RoomConnection { edges { node { id title } } }"
    one = "query One($n: Int) { rooms(first: $n) { ...page } }" + fragment  # 1 + 100 x 4 = 401
    two = "query Two($n: Int) { a: rooms(first: $n) { ...page } b: rooms(first: $n) { ...page } }" + fragment
    small = "query Small { a: rooms(first: 10) { ...page } b: rooms(first: 10) { ...page } }" + fragment
    assert "query_too_expensive" not in depth_codes(post(one))
    assert depth_codes(post(two)) == ["query_too_expensive"]
    assert "query_too_expensive" not in depth_codes(post(small))


def test_unpaged_lists_are_charged_at_their_real_bound(settings: Any) -> None:
    settings.GRAPHQL_MAX_COST = 1_000
    # missedMessages at its `limit` (default 50, at most 200); myRooms at its `first` (at most 200).
    assert "query_too_expensive" not in depth_codes(post("{ missedMessages(roomId: 1) { id seq body } }"))
    assert depth_codes(post("{ missedMessages(roomId: 1, limit: 200) { id seq body kind createdAt } }")) == [
        "query_too_expensive"
    ]
    assert depth_codes(post("{ myRooms { id title unread isMember personnel } }")) == ["query_too_expensive"]
    assert "query_too_expensive" not in depth_codes(post("{ myRooms(first: 50) { id title unread } }"))
    # participants at the most members a room can have (10,000), wherever it is asked.
    settings.GRAPHQL_MAX_COST = 100_000
    assert depth_codes(post("{ myRooms(first: 2) { " + PARTICIPANTS + " } }")) == ["query_too_expensive"]


def test_an_ordinary_big_page_and_the_contracts_room_query_are_within_the_limits() -> None:
    assert "query_too_expensive" not in depth_codes(post("{ " + BIG_PAGE + " myRooms { id title unread } }"))
    room = "{ room(id: 1) { id title maxPersonnel personnel lastSeq " + PARTICIPANTS + " } }"
    assert "query_too_expensive" not in depth_codes(post(room))


def test_more_aliases_or_root_fields_than_the_limits_are_refused_before_anything_runs() -> None:
    ten = "{ " + " ".join(f"a{i}: health {{ ok }}" for i in range(10)) + " }"
    nested = "{ rooms { edges { node { " + " ".join(f"t{i}: title" for i in range(20)) + " } } } }"
    assert post(ten).status_code == 200  # 10 root fields (and 10 aliases)
    assert "too_many_aliases" not in depth_codes(post(nested))  # 20 aliases
    too_many_aliases = "{ rooms { edges { node { " + " ".join(f"t{i}: title" for i in range(31)) + " } } } }"
    response = post(too_many_aliases)
    assert response.status_code == 400 and depth_codes(response) == ["too_many_aliases"]
    eleven = "{ " + " ".join(f"a{i}: health {{ ok }}" for i in range(11)) + " }"
    response = post(eleven)
    assert response.status_code == 400 and "too_many_root_fields" in depth_codes(response)
    eight = " ".join(f"f{i}: health {{ ok }}" for i in range(8))
    through_fragments = (
        "{ ...A ...B } fragment A on Query { health { ok } rooms { edges { cursor } } myRooms { id } } "
        f"fragment B on Query {{ {eight} }}"
    )
    assert "too_many_root_fields" in depth_codes(post(through_fragments))


def test_every_list_field_of_the_schema_declares_its_bound() -> None:
    """A new list field must say how many items it can answer, or the cost limit would guess."""
    from graphql import get_nullable_type, is_list_type, is_object_type

    from chattalk_project.schema import LIST_BOUNDS
    from chattalk_project.schema import schema as graphene_schema

    lists = {
        f"{name}.{field_name}"
        for name, graphql_type in graphene_schema.graphql_schema.type_map.items()
        if is_object_type(graphql_type) and not name.startswith("__")
        for field_name, field in graphql_type.fields.items()
        if is_list_type(get_nullable_type(field.type))
    }
    assert lists and lists <= set(LIST_BOUNDS), lists - set(LIST_BOUNDS)
    assert {"Query.myRooms", "Query.missedMessages", "Room.participants"} <= lists


# --- against real data: refused quickly, myRooms read once, the per-user rate limit ------------------------------
def member_of_rooms(count: int) -> Any:
    from accounts.models import User
    from rooms.services import create_room, join_room

    me = User.objects.create_user(username="me", password="pw-Secret-123")
    others = [User.objects.create_user(username=f"other{i}", password="pw-Secret-123") for i in range(3)]
    for n in range(count):
        room = create_room(owner=me, title=f"room {n}", max_personnel=50)
        for other in others:
            join_room(room_id=room.pk, user=other)
    return me


def as_user(user: Any) -> Client:
    from rest_framework_simplejwt.tokens import AccessToken

    return Client(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")


def test_300_aliases_of_my_rooms_with_participants_are_refused_quickly_without_touching_rooms() -> None:
    me = member_of_rooms(5)
    query = "{ " + " ".join(f"r{i}: myRooms {{ id participants {{ username connected }} }}" for i in range(300)) + " }"
    assert len(query.encode()) < 20 * 1024
    started = time.monotonic()
    with CaptureQueriesContext(connection) as captured:
        response = post(query, as_user(me))
    elapsed = time.monotonic() - started
    assert response.status_code == 400 and len(response.content) < 2_000
    assert {"too_many_aliases", "too_many_root_fields"} <= set(depth_codes(response))
    assert elapsed < 2.0, elapsed  # a parse and one walk (the old code resolved every alias)
    assert not any("rooms_room" in query["sql"] for query in captured.captured_queries)


def test_my_rooms_aliased_twice_costs_the_queries_of_once(settings: Any) -> None:
    settings.GRAPHQL_MAX_COST = 10**9  # myRooms with participants is over the cost limit; here only queries count
    me = member_of_rooms(4)
    fields = "{ id title unread isMember personnel " + PARTICIPANTS + " }"
    client = as_user(me)

    def queries(text: str) -> tuple[int, Any]:
        with CaptureQueriesContext(connection) as captured:
            response = post(text, client)
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, body
        return len(captured), body["data"]

    once, data = queries("{ myRooms " + fields + " }")
    twice, both = queries("{ a: myRooms " + fields + " b: myRooms " + fields + " }")
    assert len(data["myRooms"]) == 4 and len(data["myRooms"][0]["participants"]) == 4
    assert both["a"] == both["b"] == data["myRooms"]
    assert twice == once, (once, twice)


def test_a_normal_page_query_works_for_a_member(settings: Any) -> None:
    me = member_of_rooms(3)
    query = (
        "{ rooms(first: 20) { edges { node { id title personnel maxPersonnel unread isMember } } "
        "pageInfo { hasNextPage endCursor } } myRooms { id title unread } }"
    )
    response = post(query, as_user(me))
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    assert len(body["data"]["rooms"]["edges"]) == 3 and len(body["data"]["myRooms"]) == 3


def test_graphql_is_rate_limited_per_user_with_429_rate_limited_and_retry_after(settings: Any) -> None:
    settings.GRAPHQL_REQUESTS_PER_MINUTE = 3
    me = member_of_rooms(1)
    client = as_user(me)
    answers = [post("{ myRooms { id } }", client) for _ in range(7)]
    statuses = [answer.status_code for answer in answers]
    # Fixed windows: a burst that straddles a window's end gets at most two windows' worth.
    assert statuses.count(200) <= 6 and set(statuses) == {200, 429}
    refused = answers[statuses.index(429)]
    body = refused.json()
    assert body["code"] == "rate_limited" and body["errors"][0]["extensions"]["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 60
    # Anonymous callers count per client address; other users have their own budget.
    other = Client(REMOTE_ADDR="10.9.9.9")
    assert [post("{ health { ok } }", other).status_code for _ in range(7)].count(429) >= 1
    assert post("{ health { ok } }", Client(REMOTE_ADDR="10.9.9.10")).status_code == 200


def test_graphql_is_not_rate_limited_when_rate_limits_are_off(settings: Any) -> None:
    settings.GRAPHQL_REQUESTS_PER_MINUTE = 1
    settings.RATE_LIMITS_ENABLED = False
    assert {post("{ health { ok } }").status_code for _ in range(5)} == {200}
