"""Every REST endpoint, every GraphQL field and both sockets, called as an outsider (no credentials), a
logged-in non-member of the room, and a member who is not the owner: each gets the contract's refusal, and
never the room's data.

The walk is driven by what the project declares, so a new endpoint or field is walked without editing this
file: REST operations come from the OpenAPI schema (and the URLconf is checked to have nothing the schema
lacks), GraphQL fields from the schema's own types. What is *open* is listed here explicitly; anything not
listed is held to the strictest rule (401 for outsiders, refused for non-members).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from graphql import GraphQLNonNull, GraphQLObjectType, GraphQLScalarType, get_named_type

from chattalk_project.schema import schema as graphene_schema
from messaging.models import Message
from messaging.services import send_message
from messaging.testing import ChatClient
from presence.testing import PresenceClient
from rooms.models import Membership, Room
from rooms.services import leave_room

from .security_support import Cast, make_cast

# --- what is open, on purpose --------------------------------------------------------------------------------
# REST operations anyone may call without credentials.
PUBLIC_OPERATIONS = {
    ("POST", "/api/auth/signup"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/refresh"),
    # A download link is its own capability (signed, short-lived; 403 without a valid signature, and 403 for a
    # logged-in non-member): messaging/tests/test_attachments.py proves its refusals.
    ("GET", "/api/attachments/{attachment_id}/{variant}"),
}
# Room operations a logged-in non-member may call: the room's public card, and the way in and out.
OPEN_TO_NON_MEMBERS = {
    ("GET", "/api/rooms/{room_id}"),
    ("POST", "/api/rooms/{room_id}/join"),
    ("POST", "/api/rooms/{room_id}/leave"),
}
# Room operations only the owner (or staff) may call.
OWNER_ONLY = {("PATCH", "/api/rooms/{room_id}"), ("DELETE", "/api/rooms/{room_id}")}
# URL patterns under /api/ that are not API operations of the schema.
NOT_IN_SCHEMA = {"/api/schema/", "/api/schema/ui/", "/api/schema/redoc/", "/api/docs", "/api/docs/"}  # the docs themselves

# GraphQL root fields that answer without credentials (`me` answers null).
PUBLIC_GRAPHQL_FIELDS = {"health", "me"}
# Root fields with a room argument that a non-member may call: the public card, the caller's own leave time,
# and the way in and out.
GRAPHQL_OPEN_TO_NON_MEMBERS = {"room", "leaveTime", "joinRoom", "leaveRoom"}
# Room fields anyone logged in may read (the directory card). Everything else on Room is members-only:
# an error, or null, for a non-member.
PUBLIC_ROOM_FIELDS = {
    "id", "title", "owner", "maxPersonnel", "personnel", "createdAt", "lastSeq", "isMember",
    "kind", "visibility", "historyVisibility",
}

SECRET = "secret-" + uuid.uuid4().hex
ROOM_ARGS = {"roomId", "id"}
# Other required arguments the walk fills in (a user who is not the caller, a role).
OTHER_ARGS = {"userId": "1", "role": '"moderator"'}

pytestmark = pytest.mark.django_db


def seeded_cast() -> Cast:
    """A room whose history holds a secret only members may ever see."""
    cast = make_cast()
    send_message(room_id=cast.room.pk, sender=cast.owner, client_id=str(uuid.uuid4()), body=SECRET)
    cast.room.refresh_from_db()
    return cast


def room_state(room_id: int) -> tuple[Any, ...]:
    room = Room.objects.get(pk=room_id)
    members = tuple(sorted(Membership.objects.filter(room=room, is_active=True).values_list("user_id", flat=True)))
    return (room.title, room.max_personnel, room.personnel, room.last_seq, members)


def assert_no_room_data(cast: Cast, body: bytes, context: Any) -> None:
    text = body.decode(errors="replace")
    assert SECRET not in text, context
    assert cast.member.username not in text, context  # members' names are members-only too


# --- REST ---------------------------------------------------------------------------------------------------
def schema_operations() -> list[tuple[str, str]]:
    spec = SchemaGenerator().get_schema(request=None, public=True)
    return sorted(
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    )


def urlconf_api_routes() -> set[str]:
    """Every route of the URLconf under /api/, in the schema's {name} notation."""
    found: set[str] = set()

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            route = str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + route)
            elif isinstance(pattern, URLPattern):
                full = "/" + prefix + route
                if full.startswith("/^api/") or full == "/api/":
                    continue  # the JSON 404 catch-all
                found.add(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", full))

    walk(get_resolver().url_patterns, "")
    return {route for route in found if route.startswith("/api/")}


def test_the_schema_lists_every_api_route_of_the_urlconf() -> None:
    """So that the walk below, driven by the schema, cannot miss an endpoint."""
    schema_paths = {path for _method, path in schema_operations()}
    missing = urlconf_api_routes() - schema_paths - NOT_IN_SCHEMA
    assert not missing, f"API routes missing from the OpenAPI schema (and so from the walk): {missing}"
    assert {"/api/rooms/{room_id}/messages", "/api/rooms/{room_id}/members"} <= schema_paths


REQUEST_BODIES = {
    "/api/rooms": {"title": "intruder room", "max_personnel": 5},
    "/api/rooms/{room_id}": {"title": "pwned"},
    "/api/rooms/{room_id}/messages": {"client_id": "intrusion", "body": "intrusion"},
    "/api/rooms/{room_id}/read": {"seq": 1},
    "/api/auth/logout": {"refresh": "x"},
    "/api/rooms/{room_id}/messages/{message_id}": {"body": "intrusion"},
    "/api/rooms/{room_id}/members/{user_id}/role": {"role": "moderator"},
    "/api/rooms/{room_id}/owner": {"user_id": 1},
    "/api/dms": {"user_id": 1},
    "/api/me/blocks": {"user_id": 1},
}


def call(client: Client, method: str, path: str, room_id: int, token: str | None) -> Any:
    # Other path parameters: the room's owner (every user-scoped room action is about someone else), a token,
    # a real message of the room (a refusal must not be a mere "no such message").
    owner_id = Room.objects.filter(pk=room_id).values_list("owner_id", flat=True).first() or 1
    url = path.replace("{room_id}", str(room_id)).replace("{user_id}", str(owner_id)).replace("{token}", "x" * 43)
    if "{message_id}" in url:
        message_id = Message.objects.filter(room_id=room_id, kind="TALK").values_list("id", flat=True).first()
        url = url.replace("{message_id}", str(message_id or 1))
    url = url.replace("{emoji}", "%F0%9F%91%8D").replace("{invite_id}", "1")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    body = REQUEST_BODIES.get(path)
    return client.generic(method, url, json.dumps(body) if body else "", content_type="application/json", **headers)


def test_every_rest_operation_refuses_an_outsider_with_401() -> None:
    cast = seeded_cast()
    before = room_state(cast.room.pk)
    walked = 0
    for method, path in schema_operations():
        if (method, path) in PUBLIC_OPERATIONS:
            continue
        for token in (None, "not-a-jwt", "eyJhbGciOiJIUzI1NiJ9.e30.forged"):
            response = call(Client(), method, path, cast.room.pk, token)
            assert response.status_code == 401, (method, path, token, response.status_code, response.content[:200])
            body = response.json()
            assert isinstance(body.get("code"), str) and "detail" in body, (method, path, body)
            assert_no_room_data(cast, response.content, (method, path))
        walked += 1
    assert walked >= 12
    assert room_state(cast.room.pk) == before


def test_every_room_operation_refuses_a_logged_in_non_member() -> None:
    cast = seeded_cast()
    before = room_state(cast.room.pk)
    token = cast.token(cast.stranger)
    walked = 0
    for method, path in schema_operations():
        if "{room_id}" not in path or (method, path) in OPEN_TO_NON_MEMBERS:
            continue
        response = call(Client(), method, path, cast.room.pk, token)
        assert response.status_code in {403, 404}, (method, path, response.status_code, response.content[:300])
        assert response.json()["code"] in {"not_member", "forbidden", "not_found"}, (method, path, response.json())
        assert_no_room_data(cast, response.content, (method, path))
        walked += 1
    assert walked >= 6
    assert room_state(cast.room.pk) == before

    # The open ones give the public card only, and leaving a room one is not in changes nothing.
    for method, path in sorted(OPEN_TO_NON_MEMBERS - {("POST", "/api/rooms/{room_id}/join")}):
        response = call(Client(), method, path, cast.room.pk, token)
        assert response.status_code == 200, (method, path, response.content[:300])
        assert_no_room_data(cast, response.content, (method, path))
    assert room_state(cast.room.pk) == before
    # The caller's own room list does not include a room they are not in.
    response = call(Client(), "GET", "/api/me/rooms", cast.room.pk, token)
    assert response.status_code == 200 and response.json()["count"] == 0
    assert_no_room_data(cast, response.content, "/api/me/rooms")


def test_owner_only_operations_refuse_a_member_who_is_not_the_owner() -> None:
    cast = seeded_cast()
    before = room_state(cast.room.pk)
    for method, path in sorted(OWNER_ONLY):
        response = call(Client(), method, path, cast.room.pk, cast.token(cast.member))
        assert response.status_code == 403, (method, path, response.content[:300])
        assert response.json()["code"] == "forbidden"
    assert room_state(cast.room.pk) == before
    # ...and the owner may (PATCH), so the refusal above is about who asks, not a broken endpoint.
    response = call(Client(), "PATCH", "/api/rooms/{room_id}", cast.room.pk, cast.token(cast.owner))
    assert response.status_code == 200 and response.json()["title"] == "pwned"


def test_a_former_member_is_refused_like_any_non_member() -> None:
    cast = seeded_cast()
    leave_room(room_id=cast.room.pk, user=cast.member)
    for method, path in schema_operations():
        if "{room_id}" not in path or (method, path) in OPEN_TO_NON_MEMBERS | OWNER_ONLY:
            continue
        response = call(Client(), method, path, cast.room.pk, cast.token(cast.member))
        assert response.status_code in {403, 404}, (method, path, response.status_code)


# --- GraphQL ------------------------------------------------------------------------------------------------
def selection(type_: Any, depth: int = 0) -> str:
    """Every field of an object type down to three levels (scalars only at the bottom)."""
    named = get_named_type(type_)
    if isinstance(named, GraphQLScalarType) or not isinstance(named, GraphQLObjectType):
        return ""
    parts = []
    for name, field in named.fields.items():
        if any(isinstance(a.type, GraphQLNonNull) for a in field.args.values()):
            continue
        inner = get_named_type(field.type)
        if isinstance(inner, GraphQLObjectType):
            if depth < 3:
                parts.append(f"{name} {selection(field.type, depth + 1)}")
        else:
            parts.append(name)
    return "{ " + " ".join(parts) + " }"


# Other required arguments, filled with values that would work for a member (the room's message for ids).
FILLED_ARGS = {"body": '"walked"', "emoji": '"👍"', "q": '"walked"', "token": '"' + "x" * 43 + '"'}


def room_message_id(room_id: int) -> int:
    return Message.objects.filter(room_id=room_id).order_by("-seq").values_list("id", flat=True).first() or 1


def field_document(kind: str, name: str, field: Any, room_id: int) -> str:
    args = []
    for arg_name, arg in field.args.items():
        if arg_name in ROOM_ARGS:
            args.append(f"{arg_name}: {room_id}")
        elif arg_name == "messageId":
            args.append(f"{arg_name}: {room_message_id(room_id)}")
        elif arg_name in FILLED_ARGS:
            args.append(f"{arg_name}: {FILLED_ARGS[arg_name]}")
        elif arg_name in OTHER_ARGS:
            args.append(f"{arg_name}: {OTHER_ARGS[arg_name]}")
        elif isinstance(arg.type, GraphQLNonNull):
            raise AssertionError(f"the walk does not know how to fill {name}({arg_name})")
    arg_text = f"({', '.join(args)})" if args else ""
    return f"{kind} {{ {name}{arg_text} {selection(field.type)} }}"


def graphql_fields() -> list[tuple[str, str, Any]]:
    schema = graphene_schema.graphql_schema
    found = [("query", name, field) for name, field in schema.query_type.fields.items()]
    if schema.mutation_type is not None:
        found += [("mutation", name, field) for name, field in schema.mutation_type.fields.items()]
    return found


def graphql(document: str, token: str | None) -> tuple[int, dict[str, Any], bytes]:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    response = Client().post("/graphql", {"query": document}, content_type="application/json", **headers)
    return response.status_code, response.json(), response.content


def codes_of(body: dict[str, Any]) -> set[str]:
    return {(e.get("extensions") or {}).get("code") for e in body.get("errors") or []}


def test_every_graphql_field_refuses_an_outsider(settings: Any) -> None:
    settings.GRAPHQL_MAX_COST = 10**9  # the walk asks every field of every list; here only authorization counts
    cast = seeded_cast()
    before = room_state(cast.room.pk)
    walked = 0
    for kind, name, field in graphql_fields():
        document = field_document(kind, name, field, cast.room.pk)
        status, body, raw = graphql(document, None)
        assert status < 500, (document, body)
        assert_no_room_data(cast, raw, document)
        data = (body.get("data") or {}).get(name)
        if name in PUBLIC_GRAPHQL_FIELDS:
            assert name != "me" or data is None
            continue
        if kind == "mutation":
            assert data is not None and data["ok"] is False and data["error"] == "not_authenticated", (name, body)
        else:
            assert data is None and "not_authenticated" in codes_of(body), (name, body)
        walked += 1
    assert walked >= 7
    assert room_state(cast.room.pk) == before


def test_every_graphql_room_field_refuses_a_non_member_and_the_room_card_hides_members_only_fields(
    settings: Any,
) -> None:
    settings.GRAPHQL_MAX_COST = 10**9  # the walk asks every field of every list; here only authorization counts
    cast = seeded_cast()
    before = room_state(cast.room.pk)
    token = cast.token(cast.stranger)
    walked = 0
    for kind, name, field in graphql_fields():
        if not ROOM_ARGS & set(field.args) or name in GRAPHQL_OPEN_TO_NON_MEMBERS:
            continue
        document = field_document(kind, name, field, cast.room.pk)
        status, body, raw = graphql(document, token)
        assert status < 500, (document, body)
        assert_no_room_data(cast, raw, document)
        data = (body.get("data") or {}).get(name)
        if kind == "mutation":
            assert data is not None and data["ok"] is False and data["error"], (name, body)
        else:
            assert data is None and codes_of(body) & {"not_member", "not_found", "forbidden"}, (name, body)
        walked += 1
    assert walked >= 1

    # The room's card: public fields answer; every other Room field is an error or null.
    room_type = graphene_schema.graphql_schema.get_type("Room")
    assert isinstance(room_type, GraphQLObjectType)
    for field_name, room_field in room_type.fields.items():
        document = f"query {{ room(id: {cast.room.pk}) {{ {field_name} {selection(room_field.type)} }} }}"
        document = document.replace(" {  }", "").replace("{ }", "")
        status, body, raw = graphql(document, token)
        assert status < 500, (document, body)
        assert_no_room_data(cast, raw, document)
        room = (body.get("data") or {}).get("room")
        if field_name in PUBLIC_ROOM_FIELDS:
            assert room is not None and room.get(field_name) is not None, (field_name, body)
        else:
            value = room.get(field_name) if room else None
            assert value is None, (field_name, body)
    # Lists of rooms carry the same gate: participants of a room one is not in are refused.
    status, body, raw = graphql("{ rooms { edges { node { id participants { username } unread } } } }", token)
    assert_no_room_data(cast, raw, "rooms")
    nodes = [e["node"] for e in ((body.get("data") or {}).get("rooms") or {"edges": []})["edges"] if e]
    assert all(n.get("participants") is None and n.get("unread") is None for n in nodes), body
    status, body, raw = graphql("{ myRooms { id } }", token)
    assert body["data"]["myRooms"] == []
    assert room_state(cast.room.pk) == before


def test_a_member_sees_what_the_non_member_cannot() -> None:
    """The refusals above are about who asks: the same documents answer a member."""
    cast = seeded_cast()
    status, body, raw = graphql(
        f"{{ missedMessages(roomId: {cast.room.pk}) {{ body }} room(id: {cast.room.pk}) "
        "{ participants { username } unread } }",
        cast.token(cast.owner),
    )
    assert "errors" not in body, body
    assert cast.member.username in raw.decode()
    status, body, raw = graphql(f"{{ missedMessages(roomId: {cast.room.pk}) {{ body }} }}", cast.token(cast.member))
    assert "errors" not in body, body
    response = call(Client(), "GET", "/api/rooms/{room_id}/messages", cast.room.pk, cast.token(cast.member))
    assert response.status_code == 200 and SECRET in response.content.decode()


# --- sockets ------------------------------------------------------------------------------------------------
SOCKETS = {"chat": ChatClient, "presence": PresenceClient}


@pytest.mark.django_db(transaction=True)
def test_both_sockets_refuse_outsiders_non_members_and_unknown_rooms_with_their_codes(server_factory) -> None:
    server = server_factory()
    cast = seeded_cast()
    missing_room = cast.room.pk + 100_000
    cases = [
        ("no credentials", cast.room.pk, None, 4401),
        ("garbage token", cast.room.pk, "not-a-jwt", 4401),
        ("non-member", cast.room.pk, cast.token(cast.stranger), 4403),
        ("unknown room", missing_room, cast.token(cast.member), 4404),
    ]

    async def scenario() -> None:
        for kind, client_class in SOCKETS.items():
            for label, room_id, token, code in cases:
                client = await client_class(server.ws_url, room_id, token).connect()
                closed = await client.wait_closed()
                assert closed == code, (kind, label, closed, client.frames)
                assert all(SECRET not in json.dumps(f) for f in client.frames), (kind, label)
                assert not any(f.get("type") in {"message", "presence.snapshot"} for f in client.frames)
            # The member gets in on both, so the refusals are about who asks.
            member = await client_class(server.ws_url, cast.room.pk, cast.token(cast.member)).connect()
            await member.send_json({"type": "ping"})
            await member.wait_until(lambda c: bool(c.of_type("pong")))
            await member.close()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_sockets_past_the_per_user_cap_are_closed_with_4429(server_factory) -> None:
    cap = 3
    server = server_factory(env={"WS_MAX_SOCKETS_PER_USER": str(cap)})
    cast = seeded_cast()
    token = cast.token(cast.member)

    async def scenario() -> None:
        # Chat and presence sockets both count against the cap.
        held = [
            await ChatClient(server.ws_url, cast.room.pk, token).connect(),
            await PresenceClient(server.ws_url, cast.room.pk, token).connect(),
            await ChatClient(server.ws_url, cast.room.pk, token).connect(),
        ]
        for client in held:
            await client.send_json({"type": "ping"})
            await client.wait_until(lambda c: bool(c.of_type("pong")))
        for client_class in (ChatClient, PresenceClient):
            extra = await client_class(server.ws_url, cast.room.pk, token).connect()
            assert await extra.wait_closed() == 4429
        assert all(client.close_code is None for client in held), "the cap refuses new sockets, not old ones"
        # The cap is per user: someone else still gets in.
        others = await ChatClient(server.ws_url, cast.room.pk, cast.token(cast.owner)).connect()
        await others.send_json({"type": "ping"})
        await others.wait_until(lambda c: bool(c.of_type("pong")))
        # A closed socket frees its place.
        await held.pop().close()
        again = None
        for _ in range(50):
            again = await ChatClient(server.ws_url, cast.room.pk, token).connect()
            await again.send_json({"type": "ping"})
            try:
                await again.wait_until(lambda c: bool(c.of_type("pong")) or c.close_code is not None, 5)
            except TimeoutError:
                pass
            if again.close_code is None:
                break
            await asyncio.sleep(0.1)
        assert again is not None and again.close_code is None
        for client in [*held, others, again]:
            await client.close()

    asyncio.run(scenario())


# --- pages ---------------------------------------------------------------------------------------------------
def page_routes() -> list[str]:
    """Every server-rendered page route with a room in it (from the URLconf, so new pages are walked)."""
    from chattalk_project import page_urls

    return sorted(
        "/" + str(p.pattern) for p in page_urls.urlpatterns if isinstance(p, URLPattern) and "room_id" in str(p.pattern)
    )


def test_room_pages_never_show_the_room_to_an_outsider_or_a_non_member() -> None:
    cast = seeded_cast()
    before = room_state(cast.room.pk)
    routes = page_routes()
    assert "/rooms/<int:room_id>/" in routes
    stranger = Client()
    stranger.force_login(cast.stranger)
    for route in routes:
        url = route.replace("<int:room_id>", str(cast.room.pk))
        for method in ("GET", "POST"):
            if route.endswith("/join/"):
                continue  # joining is how a non-member gets in
            anonymous = Client().generic(method, url)
            assert anonymous.status_code in {302, 403, 405}, (method, url, anonymous.status_code)
            if anonymous.status_code == 302:
                assert anonymous["Location"].startswith("/login/"), (method, url, anonymous["Location"])
            assert_no_room_data(cast, anonymous.content, (method, url))
            response = stranger.generic(method, url)
            assert response.status_code < 500, (method, url)
            assert_no_room_data(cast, response.content, (method, url))
    assert room_state(cast.room.pk) == before
    # The same page shows a member the history, so the check above can see a leak.
    member = Client()
    member.force_login(cast.member)
    assert SECRET in member.get(f"/rooms/{cast.room.pk}/").content.decode()
