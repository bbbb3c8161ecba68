"""The messaging REST edge: history, send, read position and the caller's rooms, in the contract's shapes."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from messaging.models import Message
from messaging.services import send_message
from rooms.services import create_room

pytestmark = pytest.mark.django_db


def api(user: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")


def test_posting_a_message_stores_it_once_and_answers_201_then_200(room_with_members):
    room, (alice, _) = room_with_members(2)
    client = api(alice)
    body = {"client_id": "rest-1", "body": "  from rest  "}
    first = client.post(f"/api/rooms/{room.pk}/messages", body, content_type="application/json")
    again = client.post(f"/api/rooms/{room.pk}/messages", body, content_type="application/json")
    assert first.status_code == 201 and again.status_code == 200
    assert first.json() == again.json()
    message = first.json()
    assert set(message) == {
        "id", "room", "seq", "client_id", "kind", "sender", "body", "created_at",
        "edited_at", "deleted_at", "reply_to", "reactions", "mentions", "attachments",
    }
    assert (message["body"], message["kind"], message["room"]) == ("from rest", "TALK", room.pk)
    assert Message.objects.filter(client_id="rest-1").count() == 1


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"client_id": "x1", "body": ""}, 400, "body_empty"),
        ({"client_id": "x2", "body": "y" * 4001}, 400, "body_too_long"),
        ({"client_id": "has space", "body": "hi"}, 400, "invalid_client_id"),
        ({"body": "hi"}, 400, "validation_error"),
        ({"client_id": "x3", "body": {"no": "pe"}}, 400, "validation_error"),
    ],
)
def test_bad_sends_are_4xx_in_the_contract_format(room_with_members, payload, status, code):
    room, (alice, _) = room_with_members(2)
    response = api(alice).post(f"/api/rooms/{room.pk}/messages", payload, content_type="application/json")
    assert response.status_code == status
    assert response.json()["code"] == code


def test_outsiders_get_403_and_unknown_rooms_404(room_with_members, make_user):
    room, _ = room_with_members(2)
    outsider = api(make_user())
    assert outsider.get(f"/api/rooms/{room.pk}/messages").json()["code"] == "not_member"
    assert outsider.get(f"/api/rooms/{room.pk}/messages").status_code == 403
    send = outsider.post(
        f"/api/rooms/{room.pk}/messages", {"client_id": "o", "body": "hi"}, content_type="application/json"
    )
    assert send.status_code == 403
    assert outsider.post(f"/api/rooms/{room.pk}/read", {"seq": 1}, content_type="application/json").status_code == 403
    missing = outsider.get(f"/api/rooms/{room.pk + 999}/messages")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


def test_history_answers_results_and_has_more_ascending(room_with_members):
    room, (alice, _) = room_with_members(2)
    sent = [send_message(room_id=room.pk, sender=alice, client_id=f"m{i}", body=str(i)).message for i in range(5)]
    client = api(alice)
    page = client.get(f"/api/rooms/{room.pk}/messages", {"after_seq": sent[0]["seq"], "limit": 2}).json()
    assert [m["seq"] for m in page["results"]] == [sent[1]["seq"], sent[2]["seq"]] and page["has_more"] is True
    older = client.get(f"/api/rooms/{room.pk}/messages", {"before_seq": sent[2]["seq"], "limit": 200}).json()
    assert [m["seq"] for m in older["results"]] == list(range(1, sent[2]["seq"])) and older["has_more"] is False
    since = client.get(f"/api/rooms/{room.pk}/messages", {"since": sent[3]["created_at"]}).json()
    assert [m["body"] for m in since["results"]] == ["3", "4"]
    for bad in ({"limit": 201}, {"limit": 0}, {"after_seq": -1}, {"since": "yesterday"}, {"before_seq": "x"}):
        response = client.get(f"/api/rooms/{room.pk}/messages", bad)
        assert response.status_code == 400 and response.json()["code"] == "validation_error", bad


def test_reading_moves_the_position_and_reports_unread(room_with_members):
    room, (alice, bob) = room_with_members(2)
    sent = [send_message(room_id=room.pk, sender=alice, client_id=f"r{i}", body="x").message for i in range(3)]
    client = api(bob)
    answer = client.post(f"/api/rooms/{room.pk}/read", {"seq": sent[0]["seq"]}, content_type="application/json")
    assert answer.json() == {"last_read_seq": sent[0]["seq"], "unread": 2, "mentions": 0}
    bad = client.post(f"/api/rooms/{room.pk}/read", {"seq": -5}, content_type="application/json")
    assert bad.status_code == 400 and list(bad.json()["fields"]) == ["seq"]


def test_my_rooms_lists_each_room_with_unread_and_last_message(room_with_members, make_user):
    room, (alice, bob) = room_with_members(2)
    quiet, _ = room_with_members(2)  # a room bob is not in
    for i in range(3):
        last = send_message(room_id=room.pk, sender=alice, client_id=f"u{i}", body=f"news {i}").message
    page = api(bob).get("/api/me/rooms").json()
    assert page["count"] == 1 and page["previous"] is None
    (entry,) = page["results"]
    assert entry["id"] == room.pk and entry["unread"] == 3
    assert entry["last_message"] == last
    assert {"title", "owner", "max_personnel", "personnel", "created_at", "last_seq", "last_read_seq"} <= set(entry)
    assert quiet.pk not in [r["id"] for r in page["results"]]


def test_my_rooms_costs_a_constant_number_of_queries(room_with_members, make_user, django_assert_max_num_queries):
    user = make_user()
    from rooms.services import join_room

    for _ in range(6):
        room, (owner, _) = room_with_members(2)
        join_room(room_id=room.pk, user=user)
        send_message(room_id=room.pk, sender=owner, client_id="q", body="hello")
    client = api(user)
    with django_assert_max_num_queries(4):
        response = client.get("/api/me/rooms")
    assert len(response.json()["results"]) == 6


# --- rate limits ----------------------------------------------------------------------------------------------
def _send(client: Client, room_id: int, client_id: str) -> Any:
    return client.post(
        f"/api/rooms/{room_id}/messages", {"client_id": client_id, "body": "flood"}, content_type="application/json"
    )


def test_rest_sends_are_limited_per_user_with_429_rate_limited_and_retry_after(room_with_members, settings):
    settings.SEND_MESSAGES_BURST, settings.SEND_MESSAGES_PER_SECOND = 5, 1  # 5 sends per 5 s window
    room, (alice, bob) = room_with_members(2)
    client = api(alice)
    answers = [_send(client, room.pk, f"flood-{n}") for n in range(12)]
    accepted = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code == 429]
    # Fixed windows: a flood that straddles a window's end gets at most two windows' worth.
    assert len(accepted) + len(refused) == 12 and 5 <= len(accepted) <= 10
    assert refused[0].json()["code"] == "rate_limited"
    assert 1 <= int(refused[0]["Retry-After"]) <= 5
    assert Message.objects.filter(room=room, kind="TALK").count() == len(accepted)
    # Per user: another member still sends.
    assert _send(api(bob), room.pk, "bob-1").status_code == 201


def test_the_send_limit_counts_every_room_of_the_user_together(room_with_members, settings):
    settings.SEND_MESSAGES_BURST, settings.SEND_MESSAGES_PER_SECOND = 3, 1
    first, (alice, _) = room_with_members(2)
    second = create_room(owner=alice, title="second", max_personnel=5)
    client = api(alice)
    answers = [_send(client, room.pk, f"m-{room.pk}-{n}").status_code for n in range(4) for room in (first, second)]
    assert answers.count(201) <= 6 and 429 in answers


def test_rest_sends_are_not_limited_when_rate_limits_are_off(room_with_members, settings):
    settings.SEND_MESSAGES_BURST, settings.SEND_MESSAGES_PER_SECOND = 2, 1
    settings.RATE_LIMITS_ENABLED = False
    room, (alice, _) = room_with_members(2)
    client = api(alice)
    assert {_send(client, room.pk, f"free-{n}").status_code for n in range(10)} == {201}


def test_read_positions_are_limited_per_user(room_with_members, settings):
    settings.ROOM_WRITES_PER_MINUTE = 3
    room, (alice, _) = room_with_members(2)
    client = api(alice)
    answers = [client.post(f"/api/rooms/{room.pk}/read", {"seq": 1}, content_type="application/json") for _ in range(7)]
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) <= 6 and 429 in statuses
    refused = answers[statuses.index(429)]
    assert refused.json()["code"] == "rate_limited" and int(refused["Retry-After"]) >= 1


def test_a_send_goes_through_when_the_rate_limit_cannot_be_counted(room_with_members, settings, monkeypatch):
    """A Redis blip must not stop chat: the limit lets the send through (and says so in the log)."""

    def cache_away(key: str, rate: Any) -> None:
        raise ConnectionError("the cache is away")

    settings.SEND_MESSAGES_BURST, settings.SEND_MESSAGES_PER_SECOND = 1, 1
    monkeypatch.setattr("core.rate_limits.count_in_window", cache_away)
    room, (alice, _) = room_with_members(2)
    client = api(alice)
    assert [_send(client, room.pk, f"blip-{n}").status_code for n in range(3)] == [201, 201, 201]
