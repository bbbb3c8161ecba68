"""The message search page and the chat page opened at a hit, without a browser: the search service's
rules (only the viewer's rooms, never deleted messages), the snippet rebuilt as text, refusals as pages."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client

from accounts.models import User
from chattalk_project.pages import snippet_parts
from messaging.services import delete_message, send_message
from rooms.models import Room
from rooms.services import create_room, join_room

pytestmark = pytest.mark.django_db

PASSWORD = "Corr3ct-Horse-Battery"


def user(username: str) -> User:
    return User.objects.create_user(username=username, password=PASSWORD)


def logged_in(username: str) -> Client:
    client = Client()
    client.force_login(User.objects.get(username=username))
    return client


def chat_config(html: str) -> dict:
    marker = '<script id="chat-config" type="application/json">'
    start = html.index(marker) + len(marker)
    return json.loads(html[start : html.index("</script>", start)])


def say(room: Room, sender: User, body: str) -> int:
    return send_message(room_id=room.pk, sender=sender, client_id=str(uuid.uuid4()), body=body).message["seq"]


def test_search_page_finds_only_live_messages_of_the_viewers_rooms_and_links_each_to_its_seq() -> None:
    alice, bob = user("alice"), user("bob")
    mine = create_room(owner=alice, title="Mine", max_personnel=5)
    join_room(room_id=mine.pk, user=bob)
    theirs = create_room(owner=bob, title="Theirs", max_personnel=5)
    seq = say(mine, bob, "the address is 12 Pine street")
    say(theirs, bob, "the address of the secret base")
    gone = send_message(room_id=mine.pk, sender=bob, client_id="gone", body="old address, deleted").message
    delete_message(room_id=mine.pk, message_id=gone["id"], actor=bob)

    response = logged_in("alice").get("/search/", {"q": "address"})
    assert response.status_code == 200
    results = response.context["results"]
    assert [(r["room"]["title"], r["message"]["seq"]) for r in results] == [("Mine", seq)]
    html = response.content.decode()
    assert f'href="/rooms/{mine.pk}/?at={seq}"' in html
    assert "secret base" not in html and "deleted" not in html
    assert "<mark>address</mark>" in html

    # The room filter and the sender filter (by username; an unknown one finds nothing).
    assert logged_in("alice").get("/search/", {"q": "address", "room": theirs.pk}).context["results"] == []
    assert len(logged_in("alice").get("/search/", {"q": "address", "sender": "@bob"}).context["results"]) == 1
    assert logged_in("alice").get("/search/", {"q": "address", "sender": "alice"}).context["results"] == []
    assert logged_in("alice").get("/search/", {"q": "address", "sender": "nobody"}).context["results"] == []


def test_search_page_rebuilds_the_snippet_as_text_so_a_body_with_markup_stays_text() -> None:
    owner = user("owner")
    room = create_room(owner=owner, title="Escapes", max_personnel=5)
    say(room, owner, "hostile <mark>fake</mark> <img src=x onerror=alert(1)> payload")
    html = logged_in("owner").get("/search/", {"q": "payload"}).content.decode()
    assert "<img" not in html and "<mark>fake</mark>" not in html
    assert "&lt;img" in html or "img src" not in html  # PostgreSQL's ts_headline may drop markup-like words
    assert snippet_parts("a &lt;b&gt; <mark>hit</mark> &amp; c") == [("a <b> ", False), ("hit", True), (" & c", False)]
    assert snippet_parts("<mark>x</mark>") == [("x", True)]


def test_search_page_refuses_malformed_parameters_and_is_rate_limited_like_the_api(settings) -> None:
    user("alice")
    client = logged_in("alice")
    assert client.get("/search/", {"q": "a", "room": "x"}).status_code == 400
    assert client.get("/search/", {"q": "!!!"}).status_code == 400
    assert client.get("/search/").status_code == 200  # the empty form
    assert Client().get("/search/", {"q": "a"}).status_code == 302  # login first
    settings.SEARCH_BURST = 2
    settings.SEARCH_PER_SECOND = 0.001
    statuses = [client.get("/search/", {"q": "word"}).status_code for _ in range(4)]
    assert statuses[-1] == 429


def test_chat_page_at_a_seq_shows_the_history_around_it_and_resumes_from_the_last_shown_message() -> None:
    alice = user("alice")
    room = create_room(owner=alice, title="Long", max_personnel=5)  # seq 1: ENTER
    seqs = [say(room, alice, f"message number {n}") for n in range(120)]
    target = seqs[30]

    config = chat_config(logged_in("alice").get(f"/rooms/{room.pk}/", {"at": target}).content.decode())
    shown = [m["seq"] for m in config["history"]]
    assert target in shown and shown == sorted(shown)
    assert shown[0] < target < shown[-1] < seqs[-1]  # around the hit, not the newest page
    assert config["atSeq"] == target and config["hasMore"] is True
    assert config["lastSeq"] == shown[-1]  # the socket's replay brings everything after it
    assert config["renderedSeq"] == Room.objects.get(pk=room.pk).last_seq

    # The newest page without `at`, and with a malformed one.
    for query in ({}, {"at": "x"}):
        plain = chat_config(logged_in("alice").get(f"/rooms/{room.pk}/", query).content.decode())
        assert plain["history"][-1]["seq"] == seqs[-1] and plain["lastSeq"] == plain["renderedSeq"]
        assert plain["atSeq"] is None
