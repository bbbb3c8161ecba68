"""Every query parameter a view reads, fed hostile values: a 400 `validation_error` naming the parameter
(the page: a 400 with the message shown), never a 500; the edge of each valid range still answers 200."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from rooms.services import create_room

pytestmark = pytest.mark.django_db

BAD_INTEGERS = [
    "abc",
    "1.5",
    "1e3",
    "0x10",
    " 1",
    "+1",
    "١٢",  # Arabic-Indic digits: int() takes them, a bigint column does not need them
    "NaN",
    "\x00",
    "9223372036854775808",  # one past the largest bigint
    "99999999999999999999999999",
    "-9223372036854775809",
]
BAD_TIMES = [
    "2026-02-30T00:00:00",
    "2026-01-01T00:00:00+99:00",
    "2026-01-01T00:00:00 99:00",  # "+99:00" whose "+" arrived as a space
    "0000-01-01T00:00:00",
    "2026-01-01T25:00:00",
    "2026-13-01T00:00:00",
    "2026-01-01T00:60:00",
    "9999-12-31T23:59:59-01:00",  # past year 9999 in UTC
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "yesterday",
    "\x00",
    "2026-01-01T00:00:00" + "0" * 100,
]
BAD_TEXTS = ["\x00", "a\x00b", "tab\there", "x" * 101]


def api(user: User) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")


@pytest.fixture
def member() -> tuple[User, int]:
    user = User.objects.create_user(username="reader", password="pw-Secret-123")
    room = create_room(owner=user, title="general", max_personnel=10)
    return user, room.pk


def cases() -> list[tuple[str, str, str]]:
    """(path template, parameter, hostile value) for every parameter of every REST view that reads one."""
    history = "/api/rooms/{room}/messages"
    found = []
    for name, low_bad in (("after_seq", "-1"), ("before_seq", "0"), ("limit", "0")):
        found += [(history, name, value) for value in [*BAD_INTEGERS, low_bad]]
    found += [(history, "limit", "201")]
    found += [(history, "since", value) for value in BAD_TIMES]
    for path in ("/api/rooms", "/api/me/rooms"):
        found += [(path, "page", value) for value in [*BAD_INTEGERS, "0", "-1"]]
    found += [("/api/rooms", "search", value) for value in BAD_TEXTS]
    return found


@pytest.mark.parametrize(("path", "name", "value"), cases())
def test_a_malformed_query_parameter_is_a_400_validation_error_naming_it(member, path, name, value) -> None:
    user, room_id = member
    response = api(user).get(path.format(room=room_id), {name: value})
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["code"] == "validation_error" and list(body["fields"]) == [name], body


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/rooms/{room}/messages", {"after_seq": "9223372036854775807"}),
        ("/api/rooms/{room}/messages", {"before_seq": "9223372036854775807", "limit": "200"}),
        ("/api/rooms/{room}/messages", {"since": "9999-12-31T23:59:59+00:00"}),
        ("/api/rooms/{room}/messages", {"since": "0001-01-01T00:00:00Z"}),
        ("/api/rooms/{room}/messages", {"since": "2026-01-01T09:00:00 09:00"}),
        ("/api/rooms/{room}/messages", {"after_seq": "", "limit": ""}),
        ("/api/rooms", {"search": "x" * 100, "page": "1"}),
        ("/api/rooms", {"page": "last"}),
        ("/api/me/rooms", {"page": "1"}),
    ],
)
def test_the_edges_of_each_valid_range_are_answered(member, path, query) -> None:
    user, room_id = member
    response = api(user).get(path.format(room=room_id), query)
    assert response.status_code == 200, response.content[:300]


def test_a_page_past_the_end_is_still_a_404_not_found(member) -> None:
    user, _ = member
    response = api(user).get("/api/rooms", {"page": "9223372036854775807"})
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    ("name", "value"), [("page", value) for value in [*BAD_INTEGERS, "0"]] + [("search", v) for v in BAD_TEXTS]
)
def test_the_room_list_page_answers_a_malformed_parameter_with_a_400_page_naming_it(member, name, value) -> None:
    user, _ = member
    client = Client()
    client.force_login(user)
    response = client.get("/rooms/", {name: value})
    assert response.status_code == 400
    assert f"{name}: " in response.content.decode()
    assert response.context["page"].number == 1


@pytest.mark.parametrize(
    "value", [*BAD_TEXTS, "x" * 3000, "//evil.example/", "\ufeff/rooms/", "room-detail", "tabhere", "a.b"]
)
def test_a_malformed_next_on_the_login_page_only_loses_the_redirect(value) -> None:
    User.objects.create_user(username="alice", password="pw-Secret-123")
    assert Client().get("/login/", {"next": value}).status_code == 200
    response = Client().post(
        f"/login/?{urlencode({'next': value})}", {"username": "alice", "password": "pw-Secret-123"}
    )
    assert response.status_code == 302 and response["Location"] == "/rooms/"


def test_a_local_next_on_the_login_page_still_redirects_there() -> None:
    User.objects.create_user(username="alice", password="pw-Secret-123")
    response = Client().post("/login/?next=/rooms/%3Fpage%3D2", {"username": "alice", "password": "pw-Secret-123"})
    assert response.status_code == 302 and response["Location"] == "/rooms/?page=2"


QUERY_VALUES = st.one_of(st.text(max_size=40), st.from_regex(r"-?[0-9]{1,25}", fullmatch=True))
TIME_VALUES = st.one_of(
    st.text(max_size=40),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?([+ -][0-9]{2}:[0-9]{2}|Z)?", fullmatch=True
    ),
)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=os.environ.get("FUZZ_RANDOM") != "1",
    suppress_health_check=list(HealthCheck),
)
@given(after_seq=QUERY_VALUES, before_seq=QUERY_VALUES, limit=QUERY_VALUES, since=TIME_VALUES, page=QUERY_VALUES)
def test_random_query_values_are_answered_200_or_400_never_500(
    member: Any, after_seq: str, before_seq: str, limit: str, since: str, page: str
) -> None:
    user, room_id = member
    client = api(user)
    history = client.get(
        f"/api/rooms/{room_id}/messages",
        {"after_seq": after_seq, "before_seq": before_seq, "limit": limit, "since": since},
    )
    assert history.status_code in (200, 400), history.content[:300]
    if history.status_code == 400:
        assert history.json()["code"] == "validation_error"
    for path in ("/api/rooms", "/api/me/rooms"):
        listing = client.get(path, {"page": page, "search": since})
        assert listing.status_code in (200, 400, 404), listing.content[:300]
