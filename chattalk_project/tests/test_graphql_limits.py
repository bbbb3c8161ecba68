"""The GraphQL endpoint's limits: a query nested deeper than 10 or larger than 20 KiB is refused with an
error and a code, never a 500; GraphQL's standard validation still runs; GraphiQL only when DEBUG."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
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


ROOM_PAGE = "rooms(first: 100) { edges { node { id title participants { username connected leftAt } } } }"


def test_a_wide_query_of_many_aliased_big_pages_is_refused_with_query_too_expensive() -> None:
    aliases = " ".join(f"r{i}: {ROOM_PAGE}" for i in range(40))
    response = post("{ " + aliases + " }")
    assert response.status_code == 400
    assert "query_too_expensive" in depth_codes(response)


def test_cost_counts_fragments_and_variable_page_sizes() -> None:
    spread = " ".join(f"r{i}: rooms(first: $n) {{ ...page }}" for i in range(40))
    query = (
        "query Wide($n: Int) { " + spread + " } "
        "fragment page on RoomConnection { edges { node { id title participants { username } } } }"
    )
    assert "query_too_expensive" in depth_codes(post(query))


def test_an_ordinary_big_page_is_within_the_cost_limit() -> None:
    response = post("{ " + ROOM_PAGE + " }")
    assert "query_too_expensive" not in depth_codes(response)
