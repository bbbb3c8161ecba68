"""Message search through REST: what a member may read and nothing else, ranked, paged, escaped."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from messaging.models import Message
from messaging.services import delete_message, edit_message, send_message
from rooms.services import create_room, join_room, leave_room

pytestmark = pytest.mark.django_db


def api(user: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")


def say(room: Any, user: Any, body: str) -> dict[str, Any]:
    return send_message(room_id=room.pk, sender=user, client_id=f"s{Message.objects.count()}", body=body).message


def search(user: Any, **params: Any) -> Any:
    return api(user).get("/api/search/messages?" + urlencode(params))


def bodies(answer: Any) -> list[str]:
    assert answer.status_code == 200, answer.content
    return [hit["message"]["body"] for hit in answer.json()["results"]]


def test_search_finds_stemmed_words_in_the_callers_rooms_only(room_with_members, make_user):
    room, (alice, bob) = room_with_members(2)
    other = create_room(owner=make_user(), title="not bob's", max_personnel=5)
    say(room, alice, "Who runs the deploy tonight?")
    say(room, alice, "Nothing to see here")
    say(other, other.owner, "The deploy runs at nine")
    answer = search(bob, q="running deploys")
    assert bodies(answer) == ["Who runs the deploy tonight?"]
    hit = answer.json()["results"][0]
    assert hit["room"] == {"id": room.pk, "title": room.title, "kind": "room"}
    assert "<mark>" in hit["snippet"] and hit["message"]["seq"] > 0


def test_search_forgets_a_room_the_caller_left_and_never_finds_deleted_or_replaced_text(room_with_members):
    room, (alice, bob) = room_with_members(2)
    gone = say(room, alice, "the vault code is 4242")
    edited = say(room, alice, "meet at the old bridge")
    delete_message(room_id=room.pk, message_id=gone["id"], actor=alice)
    edit_message(room_id=room.pk, message_id=edited["id"], actor=alice, body="meet at the new harbour")
    assert bodies(search(bob, q="vault")) == []
    assert bodies(search(bob, q="bridge")) == []
    assert bodies(search(bob, q="harbour")) == ["meet at the new harbour"]
    leave_room(room_id=room.pk, user=bob)
    assert bodies(search(bob, q="harbour")) == []
    join_room(room_id=room.pk, user=bob)
    assert bodies(search(bob, q="harbour")) == ["meet at the new harbour"]


def test_korean_words_are_found_inside_words_with_particles(room_with_members):
    room, (alice, bob) = room_with_members(2)
    say(room, alice, "회의 주소는 본관 3층입니다")
    say(room, alice, "주말 잘 보내세요")
    answer = search(bob, q="주소")
    assert bodies(answer) == ["회의 주소는 본관 3층입니다"]
    assert "<mark>주소</mark>" in answer.json()["results"][0]["snippet"]
    assert bodies(search(bob, q="본관 주소")) == ["회의 주소는 본관 3층입니다"]
    assert bodies(search(bob, q="주")) and len(bodies(search(bob, q="주"))) == 2


def test_a_snippet_is_escaped_text_with_marks_only(room_with_members):
    room, (alice, bob) = room_with_members(2)
    say(room, alice, '<script>alert("x")</script> payload & more <b>bold</b>')
    snippet = search(bob, q="payload").json()["results"][0]["snippet"]
    assert "<mark>payload</mark>" in snippet
    # PostgreSQL's headline leaves markup-like words out, SQLite's keeps them: escaped, either way.
    unmarked = snippet.replace("<mark>", "").replace("</mark>", "")
    assert "<" not in unmarked and ">" not in unmarked and "&amp;" in unmarked


def test_filters_narrow_by_room_sender_and_time(room_with_members):
    room, (alice, bob) = room_with_members(2)
    second = create_room(owner=bob, title="second", max_personnel=5)
    say(room, alice, "report from alice")
    say(room, bob, "report from bob")
    say(second, bob, "report in second")
    assert sorted(bodies(search(bob, q="report", room=second.pk))) == ["report in second"]
    assert sorted(bodies(search(bob, q="report", sender=alice.pk))) == ["report from alice"]
    now = timezone.now()
    assert len(bodies(search(bob, q="report", after=(now - timedelta(minutes=5)).isoformat()))) == 3
    assert bodies(search(bob, q="report", before=(now - timedelta(minutes=5)).isoformat())) == []
    assert bodies(search(bob, q="report", has="attachment")) == []


def test_results_are_paged_with_a_count(room_with_members):
    room, (alice, bob) = room_with_members(2)
    for n in range(25):
        say(room, alice, f"standup notes {n}")
    first = search(bob, q="standup").json()
    assert first["count"] == 25 and len(first["results"]) == 20 and first["next"] and first["previous"] is None
    second = search(bob, q="standup", page=2).json()
    assert len(second["results"]) == 5
    ids = {h["message"]["id"] for h in first["results"]} | {h["message"]["id"] for h in second["results"]}
    assert len(ids) == 25


@pytest.mark.parametrize(
    ("params", "field"),
    [({}, "q"), ({"q": ""}, "q"), ({"q": "x" * 201}, "q"), ({"q": "?!"}, "q"), ({"q": "a", "room": "x"}, "room"),
     ({"q": "a", "has": "photos"}, "has"), ({"q": "a", "after": "2026-02-30T00:00:00"}, "after"),
     ({"q": "a", "page": "zero"}, "page")],
)
def test_bad_search_parameters_are_a_400_naming_the_field(room_with_members, params, field):
    _room, (_alice, bob) = room_with_members(2)
    answer = search(bob, **params)
    assert answer.status_code == 400 and answer.json()["code"] == "validation_error"
    assert field in answer.json()["fields"]


def test_search_needs_a_user_and_is_rate_limited(room_with_members, settings):
    _room, (_alice, bob) = room_with_members(2)
    assert Client().get("/api/search/messages?q=x").status_code == 401
    settings.RATE_LIMITS_ENABLED = True
    settings.SEARCH_BURST = 2
    assert search(bob, q="x").status_code == 200
    assert search(bob, q="x").status_code == 200
    limited = search(bob, q="x")
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"


def graphql(user: Any, query: str) -> dict[str, Any]:
    answer = api(user).post("/graphql", {"query": query}, content_type="application/json")
    assert answer.status_code == 200, answer.content
    return answer.json()


def test_graphql_search_answers_what_rest_does_and_refuses_bad_arguments_as_errors(room_with_members, make_user):
    room, (alice, bob) = room_with_members(2)
    other = create_room(owner=make_user(), title="elsewhere", max_personnel=5)
    say(room, alice, "the quarterly numbers are in")
    say(other, other.owner, "secret quarterly plans")
    found = graphql(bob, '{ searchMessages(q: "quarterly") { count results { snippet room { id kind } '
                         "message { body sender { username } } } } }")
    assert found["data"]["searchMessages"]["count"] == 1
    hit = found["data"]["searchMessages"]["results"][0]
    assert hit["message"]["body"] == "the quarterly numbers are in" and hit["room"] == {"id": room.pk, "kind": "room"}
    assert "<mark>quarterly</mark>" in hit["snippet"]
    refused = graphql(bob, '{ searchMessages(q: "") { count } }')
    assert refused["errors"][0]["extensions"]["code"] == "validation_error"
    too_many = graphql(bob, '{ searchMessages(q: "x", first: 500) { count } }')
    assert too_many["errors"][0]["extensions"]["code"] == "validation_error"
    anonymous = Client().post("/graphql", {"query": '{ searchMessages(q: "x") { count } }'}, content_type="application/json")
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "not_authenticated"


def test_search_honours_since_join_history_and_hides_private_rooms_from_outsiders(make_user):
    from rooms.services import accept_invite, create_invite

    owner, late, outsider = make_user(), make_user(), make_user()
    private = create_room(owner=owner, title="inner circle", max_personnel=5, visibility="private")
    say(private, owner, "budget draft before anyone joined")
    accept_invite(token=create_invite(room_id=private.pk, actor=owner).token, user=late)
    say(private, owner, "budget final after the join")
    assert bodies(search(late, q="budget")) == ["budget final after the join"]  # since_join: no earlier history
    assert sorted(bodies(search(owner, q="budget"))) == ["budget draft before anyone joined", "budget final after the join"]
    assert bodies(search(outsider, q="budget")) == []
    refused = search(outsider, q="budget", room=private.pk)
    assert refused.status_code == 404 and refused.json()["code"] == "not_found"  # its existence is not revealed


def test_graphql_search_finds_only_what_the_caller_may_read_private_rooms_since_join_and_deleted_included(make_user):
    from rooms.services import accept_invite, create_invite

    owner, late, outsider = make_user(), make_user(), make_user()
    private = create_room(owner=owner, title="inner circle", max_personnel=5, visibility="private")
    say(private, owner, "ledger draft before anyone joined")
    accept_invite(token=create_invite(room_id=private.pk, actor=owner).token, user=late)
    say(private, owner, "ledger final after the join")
    gone = say(private, owner, "ledger shredded")
    edited = say(private, owner, "ledger misspelt")
    delete_message(room_id=private.pk, message_id=gone["id"], actor=owner)
    edit_message(room_id=private.pk, message_id=edited["id"], actor=owner, body="the corrected ledger")

    def found(user: Any, room: int | None = None) -> list[str]:
        where = f", roomId: {room}" if room else ""
        answer = graphql(user, f'{{ searchMessages(q: "ledger"{where}) {{ results {{ message {{ body }} }} }} }}')
        assert "errors" not in answer, answer
        return sorted(hit["message"]["body"] for hit in answer["data"]["searchMessages"]["results"])

    assert found(late) == ["ledger final after the join", "the corrected ledger"]
    assert found(owner) == ["ledger draft before anyone joined", "ledger final after the join", "the corrected ledger"]
    assert found(outsider) == []
    refused = graphql(outsider, f'{{ searchMessages(q: "ledger", roomId: {private.pk}) {{ count }} }}')
    assert refused["errors"][0]["extensions"]["code"] == "not_found"  # its existence is not revealed
