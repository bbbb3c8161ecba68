"""Messages that live: edit, delete, reactions, replies and mentions, through the services and REST.

What the socket adds (frames to every member, resume) is in test_lifecycle_socket.py; two real processes
in test_lifecycle_processes.py.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from core.domain import InvalidInput
from events.models import OutboxEvent
from messaging.emoji import clean_emoji
from messaging.models import MAX_DISTINCT_REACTIONS, Mention, Message, MessageEdit, Reaction
from messaging.services import (
    InvalidReply,
    MayNotDelete,
    MessageDeleted,
    MessageNotFound,
    NotAChatMessage,
    NotYourMessage,
    TooManyReactions,
    delete_message,
    edit_message,
    frames_between,
    history,
    mark_read,
    my_rooms_queryset,
    replay_page,
    send_message,
    set_reaction,
    with_my_reactions,
)
from rooms.models import Room
from rooms.services import NotRoomMember, RoomNotFound, create_room

pytestmark = pytest.mark.django_db


def api(user: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")


def last_seq(room: Room) -> int:
    return Room.objects.get(pk=room.pk).last_seq


def say(room: Room, user: Any, body: str, **kwargs: Any) -> dict[str, Any]:
    return send_message(room_id=room.pk, sender=user, client_id=f"c-{Message.objects.count()}", body=body, **kwargs).message


def outbox_text() -> str:
    return json.dumps([e.payload for e in OutboxEvent.objects.all()], ensure_ascii=False)


# --- edit ------------------------------------------------------------------------------------------------
def test_the_sender_edits_a_message_which_takes_the_next_seq_and_keeps_its_own(room_with_members):
    room, (alice, _bob) = room_with_members(2)
    sent = say(room, alice, "helo")
    edited = edit_message(room_id=room.pk, message_id=sent["id"], actor=alice, body="  hello  ")
    assert edited["body"] == "hello" and edited["edited_at"] is not None
    assert edited["seq"] == sent["seq"]
    message = Message.objects.get(pk=sent["id"])
    assert message.last_change_seq == sent["seq"] + 1 == last_seq(room)
    assert list(MessageEdit.objects.filter(message=message).values_list("previous_body", flat=True)) == ["helo"]
    event = OutboxEvent.objects.filter(event_type="message.edited").get()
    assert event.payload["data"]["seq"] == message.last_change_seq
    assert event.payload["data"]["message"]["body"] == "hello"
    assert event.payload["data"]["by"]["id"] == alice.pk


def test_an_edit_to_the_same_body_changes_nothing_and_takes_no_seq(room_with_members):
    room, (alice, _bob) = room_with_members(2)
    sent = say(room, alice, "same")
    edit_message(room_id=room.pk, message_id=sent["id"], actor=alice, body="twice")
    before = last_seq(room)
    again = edit_message(room_id=room.pk, message_id=sent["id"], actor=alice, body="twice")
    assert again["body"] == "twice" and last_seq(room) == before
    assert OutboxEvent.objects.filter(event_type="message.edited").count() == 1


def test_nobody_but_the_sender_edits_and_system_messages_are_not_editable(room_with_members):
    room, (alice, bob) = room_with_members(2)
    sent = say(room, alice, "mine")
    with pytest.raises(NotYourMessage):
        edit_message(room_id=room.pk, message_id=sent["id"], actor=bob, body="hijacked")
    enter = Message.objects.filter(room=room, kind="ENTER", sender=bob).get()
    with pytest.raises(NotAChatMessage):
        edit_message(room_id=room.pk, message_id=enter.pk, actor=bob, body="no")
    assert Message.objects.get(pk=sent["id"]).body == "mine"


def test_edits_are_refused_outside_the_room_and_for_messages_of_other_rooms(room_with_members, make_user):
    room, (alice, _bob) = room_with_members(2)
    sent = say(room, alice, "here")
    other = create_room(owner=alice, title="other", max_personnel=5)
    outsider = make_user()
    with pytest.raises(NotRoomMember):
        edit_message(room_id=room.pk, message_id=sent["id"], actor=outsider, body="x")
    with pytest.raises(MessageNotFound):
        edit_message(room_id=other.pk, message_id=sent["id"], actor=alice, body="x")
    with pytest.raises(MessageNotFound):
        edit_message(room_id=room.pk, message_id="1", actor=alice, body="x")
    with pytest.raises(RoomNotFound):
        edit_message(room_id=10**9, message_id=sent["id"], actor=alice, body="x")
    with pytest.raises(InvalidInput):
        edit_message(room_id=room.pk, message_id=sent["id"], actor=alice, body=5)


# --- delete ----------------------------------------------------------------------------------------------
def test_a_deleted_message_is_a_tombstone_everywhere_its_body_was(room_with_members):
    room, (alice, bob) = room_with_members(2)
    original = say(room, alice, "the secret address @" + bob.username)
    edit_message(room_id=room.pk, message_id=original["id"], actor=alice, body="the secret street")
    set_reaction(room_id=room.pk, message_id=original["id"], actor=bob, emoji="👍", on=True)
    reply = say(room, bob, "what secret?", reply_to=original["id"])
    assert reply["reply_to"]["excerpt"] == "the secret street"

    gone = delete_message(room_id=room.pk, message_id=original["id"], actor=alice)

    assert gone["body"] == "" and gone["deleted_at"] and gone["reactions"] == [] and gone["mentions"] == []
    assert gone["kind"] == "TALK" and gone["seq"] == original["seq"] and gone["sender"]["id"] == alice.pk
    assert "secret" not in json.dumps(history(room_id=room.pk, user=bob)[0]).replace("what secret?", "")
    replies = [m for m in history(room_id=room.pk, user=bob)[0] if m["id"] == reply["id"]]
    assert replies[0]["reply_to"] == {**reply["reply_to"], "excerpt": "", "deleted": True}
    assert "secret address" not in outbox_text() and "secret street" not in outbox_text()
    assert "what secret?" in outbox_text()  # only the deleted message's content went
    assert not MessageEdit.objects.filter(message_id=original["id"]).exists()
    assert not Reaction.objects.filter(message_id=original["id"]).exists()
    assert not Mention.objects.filter(message_id=original["id"]).exists()
    row = Message.objects.get(pk=original["id"])
    assert row.body == "" and "secret" not in json.dumps(row.reactions)
    replayed = json.dumps(replay_page(room_id=room.pk, after_seq=0, limit=100))
    assert "secret street" not in replayed and "secret address" not in replayed


def test_the_sender_the_owner_and_staff_delete_but_other_members_do_not(room_with_members, make_user):
    room, (owner, alice, bob) = room_with_members(3)
    staff = make_user()
    staff.is_staff = True
    staff.save()
    messages = [say(room, alice, f"m{i}") for i in range(3)]
    with pytest.raises(MayNotDelete):
        delete_message(room_id=room.pk, message_id=messages[0]["id"], actor=bob)
    assert delete_message(room_id=room.pk, message_id=messages[0]["id"], actor=alice)["deleted_at"]
    assert delete_message(room_id=room.pk, message_id=messages[1]["id"], actor=owner)["deleted_at"]
    assert delete_message(room_id=room.pk, message_id=messages[2]["id"], actor=staff)["deleted_at"]  # not a member


def test_deleting_twice_takes_one_seq_and_a_deleted_message_cannot_be_edited_or_reacted_to(room_with_members):
    room, (alice, bob) = room_with_members(2)
    sent = say(room, alice, "short-lived")
    delete_message(room_id=room.pk, message_id=sent["id"], actor=alice)
    seq = last_seq(room)
    delete_message(room_id=room.pk, message_id=sent["id"], actor=alice)
    assert last_seq(room) == seq
    with pytest.raises(MessageDeleted):
        edit_message(room_id=room.pk, message_id=sent["id"], actor=alice, body="back")
    with pytest.raises(MessageDeleted):
        set_reaction(room_id=room.pk, message_id=sent["id"], actor=bob, emoji="tada", on=True)
    with pytest.raises(InvalidReply):
        say(room, bob, "replying to nothing", reply_to=sent["id"])
    assert OutboxEvent.objects.filter(event_type="message.deleted").count() == 1


# --- reactions -------------------------------------------------------------------------------------------
def test_reactions_count_per_emoji_name_their_users_and_leave_at_zero(room_with_members):
    room, (alice, bob, carol) = room_with_members(3)
    sent = say(room, alice, "react to me")
    set_reaction(room_id=room.pk, message_id=sent["id"], actor=bob, emoji="👍", on=True)
    set_reaction(room_id=room.pk, message_id=sent["id"], actor=carol, emoji="👍", on=True)
    after = set_reaction(room_id=room.pk, message_id=sent["id"], actor=carol, emoji="tada", on=True)
    assert after["reactions"] == [
        {"emoji": "👍", "count": 2, "users": [bob.pk, carol.pk]},
        {"emoji": "tada", "count": 1, "users": [carol.pk]},
    ]
    after = set_reaction(room_id=room.pk, message_id=sent["id"], actor=carol, emoji="tada", on=False)
    assert after["reactions"] == [{"emoji": "👍", "count": 2, "users": [bob.pk, carol.pk]}]
    kinds = list(OutboxEvent.objects.filter(event_type__startswith="reaction.").values_list("event_type", flat=True))
    assert kinds == ["reaction.added", "reaction.added", "reaction.added", "reaction.removed"]


def test_a_repeated_reaction_or_removal_changes_nothing_and_takes_no_seq(room_with_members):
    room, (alice, bob) = room_with_members(2)
    sent = say(room, alice, "once")
    set_reaction(room_id=room.pk, message_id=sent["id"], actor=bob, emoji="👍", on=True)
    seq = last_seq(room)
    again = set_reaction(room_id=room.pk, message_id=sent["id"], actor=bob, emoji="👍", on=True)
    assert again["reactions"] == [{"emoji": "👍", "count": 1, "users": [bob.pk]}] and last_seq(room) == seq
    set_reaction(room_id=room.pk, message_id=sent["id"], actor=alice, emoji="heart", on=False)  # never added
    assert last_seq(room) == seq


def test_a_message_keeps_at_most_twenty_distinct_reactions(room_with_members):
    room, (alice, bob) = room_with_members(2)
    sent = say(room, alice, "popular")
    for n in range(MAX_DISTINCT_REACTIONS):
        set_reaction(room_id=room.pk, message_id=sent["id"], actor=bob, emoji=f"e{n}", on=True)
    with pytest.raises(TooManyReactions):
        set_reaction(room_id=room.pk, message_id=sent["id"], actor=bob, emoji="one-more", on=True)
    # An existing emoji still takes more users.
    after = set_reaction(room_id=room.pk, message_id=sent["id"], actor=alice, emoji="e0", on=True)
    assert after["reactions"][0] == {"emoji": "e0", "count": 2, "users": [bob.pk, alice.pk]}


def test_a_reaction_names_at_most_twenty_users_and_refills_the_list_when_one_leaves(room_with_members):
    room, people = room_with_members(23)
    sent = say(room, people[0], "everyone likes this")
    for person in people[1:]:
        set_reaction(room_id=room.pk, message_id=sent["id"], actor=person, emoji="👍", on=True)
    shown = Message.objects.get(pk=sent["id"]).reactions[0]
    assert shown["count"] == 22 and shown["users"] == [p.pk for p in people[1:21]]
    after = set_reaction(room_id=room.pk, message_id=sent["id"], actor=people[1], emoji="👍", on=False)
    assert after["reactions"][0]["count"] == 21
    assert after["reactions"][0]["users"] == [p.pk for p in people[2:22]]


@pytest.mark.parametrize("emoji", ["👍", "👍🏽", "👨‍👩‍👧", "🇰🇷", "1️⃣", "❤️", "thumbsup", "+1", "heavy_check_mark"])
def test_a_reaction_is_one_emoji_or_a_short_name(emoji):
    assert clean_emoji(emoji) == emoji


@pytest.mark.parametrize("emoji", ["", "👍👍", "hello world", "A" * 40, "<b>", "\u200d", "🇰", "x\n", 5, None, "Thumbs"])
def test_anything_else_is_refused_as_a_reaction(emoji):
    with pytest.raises(InvalidInput):
        clean_emoji(emoji)


# --- replies ---------------------------------------------------------------------------------------------
def test_a_reply_quotes_its_original_as_it_was_and_history_shows_it_as_it_is(room_with_members):
    room, (alice, bob) = room_with_members(2)
    original = say(room, alice, "x" * 150)
    reply = say(room, bob, "agreed", reply_to=original["id"])
    assert reply["reply_to"] == {
        "id": original["id"], "seq": original["seq"], "sender": alice.as_public_dict(), "excerpt": "x" * 100,
        "deleted": False,
    }
    edit_message(room_id=room.pk, message_id=original["id"], actor=alice, body="changed my mind")
    shown = next(m for m in history(room_id=room.pk, user=bob)[0] if m["id"] == reply["id"])
    assert shown["reply_to"]["excerpt"] == "changed my mind"
    created = OutboxEvent.objects.get(event_type="message.created", payload__data__id=reply["id"])
    assert created.payload["data"]["reply_to"]["excerpt"] == "x" * 100  # the frame's moment, as stated


def test_a_reply_must_name_a_live_chat_message_of_the_same_room(room_with_members):
    room, (alice, bob) = room_with_members(2)
    elsewhere = create_room(owner=alice, title="elsewhere", max_personnel=5)
    foreign = say(elsewhere, alice, "not here")
    enter = Message.objects.filter(room=room, kind="ENTER").first()
    for bad in (foreign["id"], enter.pk, 10**12, "1", True, -1):
        with pytest.raises(InvalidReply):
            say(room, bob, "reply", reply_to=bad)
    seq = last_seq(room)
    assert seq == Room.objects.get(pk=room.pk).last_seq  # refused replies gave their seq back


# --- mentions --------------------------------------------------------------------------------------------
def test_a_mention_names_members_only_and_counts_until_read(room_with_members, make_user):
    room, (alice, bob, carol) = room_with_members(3)
    stranger = make_user()
    text = f"@{bob.username}, and @{stranger.username} and mail {carol.username}@example.com and @{alice.username}"
    sent = say(room, alice, text)
    assert sent["mentions"] == [bob.pk]  # not the stranger, not an address, not the author
    rooms = {m.room_id: m for m in my_rooms_queryset(bob)}
    assert rooms[room.pk].mentions == 1
    assert {m.room_id: m for m in my_rooms_queryset(carol)}[room.pk].mentions == 0
    position = mark_read(room_id=room.pk, user=bob, seq=sent["seq"])
    assert position.mentions == 0 and position.unread == 0


def test_an_edit_that_adds_a_mention_counts_it_and_a_deletion_uncounts_it(room_with_members):
    room, (alice, bob) = room_with_members(2)
    sent = say(room, alice, "hello")
    edited = edit_message(room_id=room.pk, message_id=sent["id"], actor=alice, body=f"hello @{bob.username}.")
    assert edited["mentions"] == [bob.pk]
    assert {m.room_id: m for m in my_rooms_queryset(bob)}[room.pk].mentions == 1
    before = {m.room_id: m for m in my_rooms_queryset(bob)}[room.pk].unread
    delete_message(room_id=room.pk, message_id=sent["id"], actor=alice)
    after = {m.room_id: m for m in my_rooms_queryset(bob)}[room.pk]
    assert after.mentions == 0 and after.unread == before - 1


# --- replay ----------------------------------------------------------------------------------------------
def test_a_replay_shows_each_change_once_at_its_latest_seq_in_the_current_state(room_with_members):
    room, (alice, bob) = room_with_members(2)
    first = say(room, alice, "one")
    start = last_seq(room)
    second = say(room, alice, "two")
    edit_message(room_id=room.pk, message_id=first["id"], actor=alice, body="one, edited")
    set_reaction(room_id=room.pk, message_id=first["id"], actor=bob, emoji="👍", on=True)  # supersedes the edit
    delete_message(room_id=room.pk, message_id=second["id"], actor=alice)
    events = replay_page(room_id=room.pk, after_seq=start, limit=100)
    seqs = [seq for seq, _ in events]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    types = [(frame["type"], (frame["message"]["id"])) for _, frame in events]
    assert types == [("message", second["id"]), ("message.updated", first["id"]), ("message.updated", second["id"])]
    by_type = {(f["type"], f["message"]["id"]): f for _, f in events}
    assert by_type[("message", second["id"])]["message"]["deleted_at"]  # shown as it is now
    assert by_type[("message.updated", first["id"])]["message"]["body"] == "one, edited"
    assert by_type[("message.updated", first["id"])]["message"]["reactions"][0]["count"] == 1
    # Pages cut anywhere give the same events.
    paged, cursor = [], start
    while page := replay_page(room_id=room.pk, after_seq=cursor, limit=1):
        paged += page
        cursor = page[-1][0]
    assert paged == events
    # A gap fill settles the same range: the superseded edit's seq is simply absent.
    assert frames_between(room_id=room.pk, after_seq=start, up_to_seq=last_seq(room)) == events


# --- REST ------------------------------------------------------------------------------------------------
def test_rest_edits_deletes_and_reacts_with_the_contracts_statuses(room_with_members):
    room, (alice, bob) = room_with_members(2)
    sent = say(room, alice, "via rest")
    url = f"/api/rooms/{room.pk}/messages/{sent['id']}"
    edited = api(alice).patch(url, {"body": "edited via rest"}, content_type="application/json")
    assert edited.status_code == 200 and edited.json()["body"] == "edited via rest"
    refused = api(bob).patch(url, {"body": "mine now"}, content_type="application/json")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    thumbs = quote("👍")
    added = api(bob).put(f"{url}/reactions/{thumbs}")
    assert added.status_code == 200
    assert added.json()["reactions"] == [{"emoji": "👍", "count": 1, "users": [bob.pk], "me": True}]
    seen_by_alice = api(alice).get(f"/api/rooms/{room.pk}/messages").json()["results"]
    assert next(m for m in seen_by_alice if m["id"] == sent["id"])["reactions"][0]["me"] is False
    assert api(bob).put(f"{url}/reactions/{quote('no such')}").status_code == 400
    assert api(bob).delete(f"{url}/reactions/{thumbs}").json()["reactions"] == []
    deleted = api(alice).delete(url)
    assert deleted.status_code == 200 and deleted.json()["body"] == "" and deleted.json()["deleted_at"]
    conflict = api(alice).patch(url, {"body": "undo"}, content_type="application/json")
    assert conflict.status_code == 409 and conflict.json()["code"] == "message_deleted"
    assert api(alice).patch(f"/api/rooms/{room.pk}/messages/99999999999999999999", {"body": "x"},
                            content_type="application/json").status_code == 404


def test_rest_refuses_outsiders_and_sends_replies(room_with_members, make_user):
    room, (alice, bob) = room_with_members(2)
    sent = say(room, alice, "members only")
    outsider = api(make_user())
    url = f"/api/rooms/{room.pk}/messages/{sent['id']}"
    assert outsider.patch(url, {"body": "x"}, content_type="application/json").status_code == 403
    assert outsider.delete(url).status_code == 403
    assert outsider.put(f"{url}/reactions/tada").status_code == 403
    assert Message.objects.get(pk=sent["id"]).reactions == []
    reply = api(bob).post(
        f"/api/rooms/{room.pk}/messages", {"client_id": "r1", "body": "re", "reply_to": sent["id"]},
        content_type="application/json",
    )
    assert reply.status_code == 201 and reply.json()["reply_to"]["id"] == sent["id"]
    bad = api(bob).post(
        f"/api/rooms/{room.pk}/messages", {"client_id": "r2", "body": "re", "reply_to": "x"},
        content_type="application/json",
    )
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_reply"


def test_edits_and_reactions_share_the_per_user_write_limit_with_sends(room_with_members, settings):
    settings.RATE_LIMITS_ENABLED = True
    settings.SEND_MESSAGES_BURST, settings.SEND_MESSAGES_PER_SECOND = 3, 1  # 3 writes per 3-s window
    room, (alice, _bob) = room_with_members(2)
    client = api(alice)
    started = time.monotonic()
    sent = client.post(f"/api/rooms/{room.pk}/messages", {"client_id": "l1", "body": "a"}, content_type="application/json")
    url = f"/api/rooms/{room.pk}/messages/{sent.json()['id']}"
    answers = [sent]
    for n in range(12):
        if n % 2:
            answers.append(client.patch(url, {"body": f"edit {n}"}, content_type="application/json"))
        else:
            answers.append(client.put(f"{url}/reactions/{'tada' if n % 4 else 'heart'}"))
    elapsed = time.monotonic() - started
    accepted = [a for a in answers if a.status_code in (200, 201)]
    refused = [a for a in answers if a.status_code == 429]
    assert len(accepted) + len(refused) == 13
    # Fixed windows: the flood gets at most one window's worth per window it spans.
    assert len(accepted) <= 3 * (int(elapsed // 3) + 2)
    assert refused and refused[0].json()["code"] == "rate_limited"


def test_my_rooms_reports_mentions_beside_unread(room_with_members):
    room, (alice, bob) = room_with_members(2)
    say(room, alice, f"hey @{bob.username}")
    say(room, alice, "no mention")
    mine = api(bob).get("/api/me/rooms").json()["results"]
    assert [(r["id"], r["unread"], r["mentions"]) for r in mine] == [(room.pk, 2, 1)]


def test_marking_the_callers_reactions_never_changes_the_message_that_the_frame_carries(room_with_members):
    room, (alice, bob) = room_with_members(2)
    sent = say(room, alice, "shared bytes")
    message = set_reaction(room_id=room.pk, message_id=sent["id"], actor=bob, emoji="fire", on=True)
    frame_reactions = message["reactions"]
    marked = with_my_reactions([message], bob)[0]
    assert marked["reactions"][0]["me"] is True
    assert message["reactions"] is frame_reactions and "me" not in message["reactions"][0]
