"""The Content-Security-Policy header: strict on the pages, the admin and the API; an explicit looser policy
for the pages that need one (Redoc, GraphiQL, each named in csp.py); configurable.
The browser proof that every page works under it is in test_pages_browser.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from rooms.services import create_room

pytestmark = pytest.mark.django_db

STRICT = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self' ws://testserver wss://testserver; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def directives(policy: str) -> dict[str, list[str]]:
    found = {}
    for part in policy.split(";"):
        name, *values = part.split()
        found[name] = values
    return found


@pytest.fixture
def member() -> Client:
    alice = User.objects.create_user(username="alice", password="pw-Secret-123")
    create_room(owner=alice, title="Lobby", max_personnel=5)
    client = Client()
    client.force_login(alice)
    return client


def test_every_page_the_admin_and_the_api_carry_the_strict_policy(member: Client) -> None:
    room_id = User.objects.get(username="alice").memberships.get().room_id
    anonymous = Client()
    answers = {
        "/": anonymous.get("/"),
        "/login/": anonymous.get("/login/"),
        "/signup/": anonymous.get("/signup/"),
        "/admin/login/": anonymous.get("/admin/login/"),
        "/rooms/": member.get("/rooms/"),
        "/rooms/id/": member.get(f"/rooms/{room_id}/"),
        "/api/rooms": member.get("/api/rooms", HTTP_ACCEPT="application/json"),
        "/graphql": member.post("/graphql", {"query": "{ health { ok } }"}, content_type="application/json"),
        "404": anonymous.get("/no-such-page/"),
    }
    for path, response in answers.items():
        assert response["Content-Security-Policy"] == STRICT, path


def test_a_secure_request_allows_only_wss_to_its_own_host(settings: Any) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    response = Client().get("/login/", HTTP_X_FORWARDED_PROTO="https", HTTP_HOST="chat.example.com")
    assert directives(response["Content-Security-Policy"])["connect-src"] == ["'self'", "wss://chat.example.com"]


def test_a_request_for_a_foreign_host_is_refused_with_a_policy_naming_no_socket_origin() -> None:
    response = Client().get("/login/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert directives(response["Content-Security-Policy"])["connect-src"] == ["'self'"]


def test_the_api_docs_index_and_swagger_ui_carry_the_strict_policy_and_load_only_our_files(member: Client) -> None:
    for path in ("/api/docs/", "/api/schema/ui/", "/api/schema/ui/?script"):
        response = member.get(path)
        assert response.status_code == 200, path
        assert response["Content-Security-Policy"] == STRICT, path
        assert not re.findall(r'(?:src|href)="(?:https?:)?//', response.content.decode()), path


def test_redoc_alone_may_use_inline_styles_and_a_blob_worker_and_still_runs_only_our_scripts(member: Client) -> None:
    response = member.get("/api/schema/redoc/")
    assert response.status_code == 200
    policy = directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"] and policy["worker-src"] == ["'self'", "blob:"]
    assert policy["img-src"] == ["'self'", "data:"] and policy["object-src"] == ["'none'"]
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', response.content.decode())


def test_graphiql_alone_may_load_data_fonts_and_graphql_answers_the_strict_policy(settings: Any) -> None:
    settings.DEBUG = True
    page = Client().get("/graphql", HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    policy = directives(page["Content-Security-Policy"])
    assert policy == {**directives(STRICT), "font-src": ["'self'", "data:"]}
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', page.content.decode())
    answer = Client().post("/graphql", {"query": "{ health { ok } }"}, content_type="application/json")
    assert answer["Content-Security-Policy"] == STRICT


@pytest.mark.parametrize(
    ("mode", "header", "absent"),
    [
        ("report-only", "Content-Security-Policy-Report-Only", "Content-Security-Policy"),
        ("off", None, "Content-Security-Policy"),
    ],
)
def test_the_policy_can_be_report_only_or_off(settings: Any, mode: str, header: str | None, absent: str) -> None:
    settings.CONTENT_SECURITY_POLICY = mode
    response = Client().get("/login/")
    assert absent not in response
    if header:
        assert response[header] == STRICT
    else:
        assert "Content-Security-Policy-Report-Only" not in response
