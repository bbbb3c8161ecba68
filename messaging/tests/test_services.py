"""The messaging domain: gapless seq, idempotent sends, history, read positions."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection, transaction

from core.domain import InvalidInput
from events.models import OutboxEvent
from messaging.models import Message, MessageKind
from messaging.services import (
    BodyEmpty,
    BodyTooLong,
    InvalidClientId,
    ReadPosition,
    history,
    mark_read,
    send_message,
)
from rooms.models import Membership
from rooms.services import NotRoomMember, RoomNotFound, join_room, leave_room


def seqs(room_id: int) -> list[int]:
    return list(Message.objects.filter(room_id=room_id).order_by("seq").values_list("seq", flat=True))


def test_sends_take_consecutive_seqs_and_room_last_seq_follows(room_with_members):
    room, (alice, bob) = room_with_members(2)
    before = room.last_seq
    a = send_message(room_id=room.pk, sender=alice, client_id="a1", body="hi")
    b = send_message(room_id=room.pk, sender=bob, client_id="b1", body="hello")
    assert (a.message["seq"], b.message["seq"]) == (before + 1, before + 2)
    room.refresh_from_db()
    assert room.last_seq == before + 2
    assert seqs(room.pk) == list(range(1, room.last_seq + 1))


def test_resending_a_client_id_returns_the_first_message_and_stores_nothing(room_with_members):
    room, (alice, _bob) = room_with_members(2)
    first = send_message(room_id=room.pk, sender=alice, client_id="same", body="once")
    events_before = OutboxEvent.objects.count()
    again = send_message(room_id=room.pk, sender=alice, client_id="same", body="different body")
    assert first.created and not again.created
    assert again.message == first.message
    assert Message.objects.filter(client_id="same").count() == 1
    assert OutboxEvent.objects.count() == events_before


def test_the_same_client_id_from_two_senders_is_two_messages(room_with_members):
    room, (alice, bob) = room_with_members(2)
    send_message(room_id=room.pk, sender=alice, client_id="c", body="x")
    send_message(room_id=room.pk, sender=bob, client_id="c", body="y")
    assert Message.objects.filter(room=room, client_id="c").count() == 2


def test_body_is_trimmed_and_bounded(room_with_members, settings):
    room, (alice, _) = room_with_members(2)
    assert send_message(room_id=room.pk, sender=alice, client_id="t", body="  hi  ").message["body"] == "hi"
    with pytest.raises(BodyEmpty):
        send_message(room_id=room.pk, sender=alice, client_id="e", body="   ")
    with pytest.raises(BodyTooLong):
        send_message(room_id=room.pk, sender=alice, client_id="l", body="x" * 4001)
    assert send_message(room_id=room.pk, sender=alice, client_id="m", body="x" * 4000).created
    with pytest.raises(InvalidInput):
        send_message(room_id=room.pk, sender=alice, client_id="n", body=42)
    for bad in ("", "x" * 65, "has space", None, 7):
        with pytest.raises(InvalidClientId):
            send_message(room_id=room.pk, sender=alice, client_id=bad, body="ok")


def test_non_members_and_unknown_rooms_are_refused_and_take_no_seq(room_with_members, make_user):
    room, (alice, bob) = room_with_members(2)
    outsider = make_user()
    last_seq = room.last_seq
    with pytest.raises(NotRoomMember):
        send_message(room_id=room.pk, sender=outsider, client_id="o", body="let me in")
    leave_room(room_id=room.pk, user=bob)
    room.refresh_from_db()
    last_seq = room.last_seq  # the LEAVE message took one
    with pytest.raises(NotRoomMember):
        send_message(room_id=room.pk, sender=bob, client_id="b", body="still here?")
    with pytest.raises(RoomNotFound):
        send_message(room_id=room.pk + 1000, sender=alice, client_id="a", body="hello?")
    room.refresh_from_db()
    assert room.last_seq == last_seq
    assert seqs(room.pk) == list(range(1, last_seq + 1))


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_send_gives_its_seq_back(room_with_members):
    room, (alice, _) = room_with_members(2)
    before = room.last_seq
    with pytest.raises(RuntimeError), transaction.atomic():
        send_message(room_id=room.pk, sender=alice, client_id="doomed", body="never")
        raise RuntimeError("the caller's transaction fails after the send")
    after = send_message(room_id=room.pk, sender=alice, client_id="kept", body="kept")
    assert after.message["seq"] == before + 1
    assert not OutboxEvent.objects.filter(payload__data__client_id="doomed").exists()


def test_joining_writes_enter_and_leaving_writes_leave_with_the_user_as_sender(room_with_members, make_user):
    room, (alice, _) = room_with_members(2)
    carol = make_user()
    join_room(room_id=room.pk, user=carol)
    leave_room(room_id=room.pk, user=carol)
    kinds = list(Message.objects.filter(room=room, sender=carol).order_by("seq").values_list("kind", flat=True))
    assert kinds == [MessageKind.ENTER, MessageKind.LEAVE]


def test_a_new_member_has_nothing_unread(room_with_members, make_user):
    room, (alice, _) = room_with_members(2)
    for i in range(3):
        send_message(room_id=room.pk, sender=alice, client_id=f"m{i}", body="before you came")
    carol = make_user()
    join_room(room_id=room.pk, user=carol)
    membership = Membership.objects.get(room=room, user=carol)
    room.refresh_from_db()
    assert membership.last_read_seq == room.last_seq
    assert mark_read(room_id=room.pk, user=carol, seq=0) == ReadPosition(room.last_seq, 0, 0)


def test_unread_counts_talk_from_others_and_read_position_only_moves_forward(room_with_members):
    room, (alice, bob) = room_with_members(2)
    start = Membership.objects.get(room=room, user=bob).last_read_seq
    send_message(room_id=room.pk, sender=bob, client_id="own", body="mine do not count")
    for i in range(4):
        last = send_message(room_id=room.pk, sender=alice, client_id=f"a{i}", body="for bob").message
    assert mark_read(room_id=room.pk, user=bob, seq=start) == ReadPosition(start, 4, 0)
    assert mark_read(room_id=room.pk, user=bob, seq=last["seq"] - 1) == ReadPosition(last["seq"] - 1, 1, 0)
    assert mark_read(room_id=room.pk, user=bob, seq=1) == ReadPosition(last["seq"] - 1, 1, 0)  # never back
    assert mark_read(room_id=room.pk, user=bob, seq=10**9) == ReadPosition(last["seq"], 0, 0)  # never past the end
    with pytest.raises(InvalidInput):
        mark_read(room_id=room.pk, user=bob, seq=-1)


def test_history_pages_by_seq_and_time(room_with_members, make_user):
    room, (alice, _) = room_with_members(2)
    sent = [send_message(room_id=room.pk, sender=alice, client_id=f"h{i}", body=str(i)).message for i in range(10)]
    page, more = history(room_id=room.pk, user=alice, after_seq=sent[0]["seq"], limit=3)
    assert [m["seq"] for m in page] == [s["seq"] for s in sent[1:4]] and more
    page, more = history(room_id=room.pk, user=alice, before_seq=sent[-1]["seq"], limit=3)
    assert [m["seq"] for m in page] == [s["seq"] for s in sent[6:9]] and more
    page, more = history(room_id=room.pk, user=alice, after_seq=sent[-2]["seq"])
    assert [m["seq"] for m in page] == [sent[-1]["seq"]] and not more
    page, _ = history(room_id=room.pk, user=alice, since=Message.objects.get(client_id="h5").created_at)
    assert [m["body"] for m in page] == [str(i) for i in range(5, 10)]
    with pytest.raises(NotRoomMember):
        history(room_id=room.pk, user=make_user())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_in_one_room_get_a_gapless_seq(room_with_members):
    room, users = room_with_members(8)
    errors: list[BaseException] = []

    def sender(user) -> None:
        try:
            for i in range(15):
                send_message(room_id=room.pk, sender=user, client_id=str(uuid.uuid4()), body=f"{user.pk}-{i}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sender, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    room.refresh_from_db()
    assert seqs(room.pk) == list(range(1, room.last_seq + 1))
    assert Message.objects.filter(room=room, kind=MessageKind.TALK).count() == 8 * 15


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_resends_of_one_client_id_store_one_message(room_with_members):
    room, (alice, _) = room_with_members(2)
    results = []

    def resend() -> None:
        try:
            results.append(send_message(room_id=room.pk, sender=alice, client_id="racy", body="once"))
        finally:
            connection.close()

    threads = [threading.Thread(target=resend) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6
    assert sum(r.created for r in results) == 1
    assert len({r.message["id"] for r in results}) == 1
    room.refresh_from_db()
    assert seqs(room.pk) == list(range(1, room.last_seq + 1))
