"""The page views without a browser: forms go through the services, refusals become messages, never a 500."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from accounts.models import User
from messaging.services import send_message
from rooms.models import Room
from rooms.services import create_room, join_room

pytestmark = pytest.mark.django_db

PASSWORD = "Corr3ct-Horse-Battery"


def user(username: str) -> User:
    return User.objects.create_user(username=username, password=PASSWORD)


def logged_in(username: str, **client_options: object) -> Client:
    client = Client(**client_options)  # type: ignore[arg-type]
    client.force_login(User.objects.get(username=username))
    return client


def test_signup_page_creates_an_ordinary_user_and_logs_in_whatever_the_form_asks() -> None:
    client = Client()
    response = client.post(
        "/signup/",
        {
            "username": "newbie",
            "nickname": "New",
            "password": PASSWORD,
            "password_again": PASSWORD,
            "is_staff": "on",
            "is_superuser": "on",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/rooms/"
    created = User.objects.get(username="newbie")
    assert (created.nickname, created.is_staff, created.is_superuser) == ("New", False, False)
    assert client.get("/rooms/").status_code == 200


def test_signup_page_shows_the_services_refusals_as_field_errors() -> None:
    user("taken")
    taken = Client().post("/signup/", {"username": "Taken", "password": PASSWORD, "password_again": PASSWORD})
    assert taken.status_code == 200
    assert taken.context["form"].errors["username"] == ["A user with that username already exists."]
    weak = Client().post("/signup/", {"username": "weak", "password": "1234", "password_again": "1234"})
    assert "password" in weak.context["form"].errors
    assert not User.objects.filter(username="weak").exists()
    mismatch = Client().post("/signup/", {"username": "x1", "password": PASSWORD, "password_again": PASSWORD + "!"})
    assert "password_again" in mismatch.context["form"].errors


def test_login_page_refuses_a_wrong_password_and_ignores_a_foreign_next() -> None:
    user("alice")
    wrong = Client().post("/login/", {"username": "alice", "password": "nope"})
    assert wrong.status_code == 200
    assert "Wrong username or password." in wrong.content.decode()
    right = Client().post("/login/", {"username": "alice", "password": PASSWORD, "next": "https://evil.example/"})
    assert right.status_code == 302 and right["Location"] == "/rooms/"


def test_page_forms_refuse_a_post_without_the_csrf_token() -> None:
    user("alice")
    client = logged_in("alice", enforce_csrf_checks=True)
    response = client.post("/rooms/new/", {"title": "No token", "max_personnel": "5"})
    assert response.status_code == 403
    assert not Room.objects.filter(title="No token").exists()


def test_pages_need_a_login() -> None:
    for path in ("/rooms/", "/rooms/1/"):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_create_form_makes_the_creator_a_member_and_refuses_bad_input_with_400() -> None:
    user("alice")
    client = logged_in("alice")
    response = client.post("/rooms/new/", {"title": "Garden", "max_personnel": "12"})
    room = Room.objects.get(title="Garden")
    assert response.status_code == 302 and response["Location"] == f"/rooms/{room.pk}/"
    assert (room.personnel, room.max_personnel) == (1, 12)
    bad = client.post("/rooms/new/", {"title": "Too big", "max_personnel": "10001"})
    assert bad.status_code == 400
    assert "max_personnel" in bad.context["create_form"].errors
    assert not Room.objects.filter(title="Too big").exists()


def test_join_form_of_a_full_room_says_so_and_takes_no_seat() -> None:
    owner, alice = user("owner"), user("alice")
    room = create_room(owner=owner, title="Pair", max_personnel=2)
    join_room(room_id=room.pk, user=user("bob"))
    response = logged_in("alice").post(f"/rooms/{room.pk}/join/", follow=True)
    assert response.redirect_chain[-1][0] == "/rooms/"
    assert "The room is full." in [str(m) for m in response.context["messages"]]
    room.refresh_from_db()
    assert room.personnel == 2
    assert not room.memberships.filter(user=alice, is_active=True).exists()


def test_room_list_marks_full_rooms_and_disables_their_join_button() -> None:
    owner = user("owner")
    user("alice")
    full = create_room(owner=owner, title="Pair", max_personnel=2)
    join_room(room_id=full.pk, user=user("bob"))
    spacious = create_room(owner=owner, title="Spacious", max_personnel=50)
    html = logged_in("alice").get("/rooms/").content.decode()
    pair_row = html[html.index(f'<tr data-room-id="{full.pk}"') :].split("</tr>")[0]
    assert "2 / 2" in pair_row and "disabled" in pair_row and "Full" in pair_row
    open_row = html[html.index(f'<tr data-room-id="{spacious.pk}"') :].split("</tr>")[0]
    assert "1 / 50" in open_row and "disabled" not in open_row


def test_chat_page_is_for_members_and_carries_the_history_safely() -> None:
    owner = user("owner")
    user("stranger")
    room = create_room(owner=owner, title="Escapes", max_personnel=5)
    hostile = "</script><script>alert(1)</script>"
    send_message(room_id=room.pk, sender=owner, client_id="c-1", body=hostile)

    refused = logged_in("stranger").get(f"/rooms/{room.pk}/", follow=True)
    assert refused.redirect_chain[-1][0] == "/rooms/"
    assert "Join the room first." in [str(m) for m in refused.context["messages"]]

    html = logged_in("owner").get(f"/rooms/{room.pk}/").content.decode()
    assert hostile not in html  # json_script escapes <, > and &
    start = html.index('<script id="chat-config" type="application/json">') + len(
        '<script id="chat-config" type="application/json">'
    )
    config = json.loads(html[start : html.index("</script>", start)])
    assert config["lastSeq"] == 2
    assert [m["body"] for m in config["history"]] == ["", hostile]  # ENTER, then the message
    assert config["strings"]["reconnecting"] == "reconnecting…"


def test_leave_form_gives_the_seat_back() -> None:
    owner = user("owner")
    room = create_room(owner=owner, title="Short stay", max_personnel=5)
    join_room(room_id=room.pk, user=user("alice"))
    response = logged_in("alice").post(f"/rooms/{room.pk}/leave/")
    assert response.status_code == 302 and response["Location"] == "/rooms/"
    room.refresh_from_db()
    assert room.personnel == 1


def test_pages_speak_korean_to_a_korean_browser() -> None:
    user("minji")
    html = logged_in("minji", HTTP_ACCEPT_LANGUAGE="ko-KR,ko;q=0.9").get("/rooms/").content.decode()
    assert '<html lang="ko">' in html
    assert "방 만들기" in html and "채팅방 검색" in html


def with_rate(settings, scope: str, rate: str) -> None:
    """DRF re-reads its settings on Django's setting_changed signal, which the settings fixture sends."""
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], scope: rate}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}


def test_the_login_page_is_throttled_like_the_api_login(settings) -> None:
    with_rate(settings, "login_username", "3/min")
    user("mallory-target")
    statuses = [
        Client(REMOTE_ADDR=f"10.0.0.{i}")
        .post("/login/", {"username": "mallory-target", "password": "guess"})
        .status_code
        for i in range(5)
    ]
    assert statuses == [200, 200, 200, 429, 429]
    refused = Client(REMOTE_ADDR="10.0.0.9").post("/login/", {"username": "mallory-target", "password": PASSWORD})
    assert refused.status_code == 429 and "Too many attempts" in refused.content.decode()
    assert int(refused["Retry-After"]) >= 1


def test_the_signup_page_is_throttled_per_ip(settings) -> None:
    with_rate(settings, "signup_ip", "2/hour")
    statuses = [
        Client(REMOTE_ADDR="10.1.1.1")
        .post("/signup/", {"username": f"newbie{i}", "password": PASSWORD, "password_again": PASSWORD})
        .status_code
        for i in range(3)
    ]
    assert statuses == [302, 302, 429]
    assert not User.objects.filter(username="newbie2").exists()


def test_the_room_creation_form_shares_the_per_user_room_creation_limit_with_the_api(settings) -> None:
    settings.ROOMS_CREATED_PER_HOUR = 2
    user("alice")
    client = logged_in("alice")
    api = client.post("/api/rooms", {"title": "by api", "max_personnel": 5}, content_type="application/json")
    assert api.status_code == 201
    assert client.post("/rooms/new/", {"title": "by form", "max_personnel": "5"}).status_code == 302
    refused = client.post("/rooms/new/", {"title": "one too many", "max_personnel": "5"})
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert "Too many attempts" in refused.content.decode()
    assert refused.context["create_form"]["title"].value() == "one too many"  # the form keeps what was typed
    assert not Room.objects.filter(title="one too many").exists()


def test_the_join_and_leave_forms_are_limited_per_user(settings) -> None:
    settings.ROOM_WRITES_PER_MINUTE = 2
    owner = user("owner")
    user("bob")
    room = create_room(owner=owner, title="Door", max_personnel=5)
    client = logged_in("bob")
    answers = [client.post(f"/rooms/{room.pk}/{action}/") for action in ("join", "leave") * 3]
    statuses = [answer.status_code for answer in answers]
    # Fixed windows: a burst that straddles a window's end gets at most two windows' worth.
    assert statuses.count(302) <= 4 and 429 in statuses
    refused = answers[statuses.index(429)]
    assert int(refused["Retry-After"]) >= 1 and "Too many attempts" in refused.content.decode()


def test_sidebar_lists_only_the_viewers_rooms_with_their_counts_and_the_title_total() -> None:
    alice, bob, carol = user("alice"), user("bob"), user("carol")
    here = create_room(owner=alice, title="Here", max_personnel=5)
    busy = create_room(owner=alice, title="Busy", max_personnel=5)
    secret = create_room(owner=carol, title="Carol's secret", max_personnel=5)
    for room in (here, busy):
        join_room(room_id=room.pk, user=bob)
    send_message(room_id=busy.pk, sender=alice, client_id="side-1", body="@bob look")
    send_message(room_id=busy.pk, sender=alice, client_id="side-2", body="and this")
    send_message(room_id=secret.pk, sender=carol, client_id="side-3", body="nobody else's business")

    for path in (f"/rooms/{here.pk}/", "/rooms/"):
        response = logged_in("bob").get(path)
        assert response.status_code == 200
        rows = {room["id"]: room for room in response.context["sidebar_rooms"]}
        assert set(rows) == {here.pk, busy.pk}  # never another user's room
        assert (rows[busy.pk]["unread"], rows[busy.pk]["mentions"]) == (2, 1)
        assert (rows[here.pk]["unread"], rows[here.pk]["mentions"]) == (0, 0)
        assert rows[here.pk]["current"] is (path != "/rooms/")
        html = response.content.decode()
        assert html.count('data-testid="sidebar-room"') == 2
        assert "Carol&#x27;s secret" not in html.split('id="sidebar"')[1].split("</nav>")[0]
        assert "<title>(2) " in html
    config = json.loads(
        logged_in("bob")
        .get(f"/rooms/{here.pk}/")
        .content.decode()
        .split('id="sidebar-config" type="application/json">')[1]
        .split("</script>")[0]
    )
    assert config["currentRoomId"] == here.pk and config["socketPath"] == "/ws/me/"
