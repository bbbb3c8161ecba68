"""seed_load: bulk data that keeps the services' invariants, and runs twice without doubling anything."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Max

from accounts.models import User
from messaging.models import Message
from rooms.models import Membership, Room


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_load", *args, stdout=out)
    return out.getvalue()


def assert_consistent(room_prefix: str = "Load room ") -> None:
    rooms = list(Room.objects.filter(title__startswith=room_prefix))
    assert rooms
    for room in rooms:
        active = set(Membership.objects.filter(room=room, is_active=True).values_list("user_id", flat=True))
        assert room.personnel == len(active) <= room.max_personnel
        seqs = list(Message.objects.filter(room=room).order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1)), f"seq of room {room.pk} is not gapless"
        assert room.last_seq == (seqs[-1] if seqs else 0)
        senders = set(Message.objects.filter(room=room).values_list("sender_id", flat=True))
        assert senders <= active, "every seeded message is sent by a member of its room"


@pytest.mark.django_db
def test_seed_load_keeps_personnel_equal_to_memberships_and_seq_gapless() -> None:
    out = seed("--users=12", "--rooms=3", "--messages=50", "--members-per-room=5")
    assert User.objects.filter(username__startswith="load-").count() == 12
    assert Room.objects.filter(title__startswith="Load room ").count() == 3
    assert Message.objects.filter(room__title__startswith="Load room ").count() == 50
    assert_consistent()
    assert "log in as load-000001 / load-password-1" in out
    assert authenticate(username="load-000001", password="load-password-1") is not None


@pytest.mark.django_db
def test_seed_load_twice_is_idempotent_and_tops_up_without_gaps() -> None:
    seed("--users=10", "--rooms=2", "--messages=30", "--members-per-room=4")
    counts = (User.objects.count(), Room.objects.count(), Membership.objects.count(), Message.objects.count())
    seed("--users=10", "--rooms=2", "--messages=30", "--members-per-room=4")
    assert (User.objects.count(), Room.objects.count(), Membership.objects.count(), Message.objects.count()) == counts
    seed("--users=10", "--rooms=2", "--messages=41", "--members-per-room=4")
    assert Message.objects.count() == 41
    assert_consistent()


@pytest.mark.django_db
def test_seeded_rooms_take_live_messages_after_the_seeded_history() -> None:
    from messaging.services import send_message

    seed("--users=6", "--rooms=1", "--messages=7", "--members-per-room=3")
    room = Room.objects.get(title__startswith="Load room ")
    member = User.objects.get(pk=Membership.objects.filter(room=room, is_active=True).values("user_id")[:1])
    result = send_message(room_id=room.pk, sender=member, client_id="live-1", body="after the seed")
    assert result.message["seq"] == 8
    assert_consistent()


@pytest.mark.django_db
def test_seed_load_reset_removes_only_seeded_rows() -> None:
    other = User.objects.create_user(username="alice", password="x-password-1")
    own_room = Room.objects.create(title="Alice's room", owner=other, max_personnel=10)
    seed("--users=8", "--rooms=2", "--messages=20", "--members-per-room=3")
    seed("--users=5", "--rooms=1", "--messages=4", "--members-per-room=2", "--reset")
    assert User.objects.filter(username__startswith="load-").count() == 5
    assert Room.objects.filter(title__startswith="Load room ").count() == 1
    assert Message.objects.filter(room__title__startswith="Load room ").count() == 4
    assert User.objects.filter(pk=other.pk).exists() and Room.objects.filter(pk=own_room.pk).exists()
    assert_consistent()


@pytest.mark.postgres
@pytest.mark.django_db
def test_seed_load_copies_messages_on_postgresql_with_the_same_invariants() -> None:
    assert connection.vendor == "postgresql"
    seed("--users=30", "--rooms=4", "--messages=6001", "--members-per-room=7")
    per_room = dict(
        Message.objects.filter(room__title__startswith="Load room ")
        .values("room_id")
        .annotate(n=Count("id"), top=Max("seq"))
        .values_list("room_id", "n")
    )
    assert sorted(per_room.values()) == [1500, 1500, 1500, 1501]
    assert_consistent()


@pytest.mark.django_db
def test_seed_load_draws_progress_bars_on_a_terminal_stderr_and_keeps_stdout_to_lines(make_terminal: Any) -> None:
    out, err = StringIO(), make_terminal()
    call_command("seed_load", "--users=6", "--rooms=2", "--messages=10", "--members-per-room=3", stdout=out, stderr=err)
    bars = err.getvalue()
    assert "users:" in bars and "memberships:" in bars and "messages:" in bars and "rows" in bars
    assert "\r" not in out.getvalue()
    assert "messages: +10 of 10" in out.getvalue() and "seeded in" in out.getvalue()

    quiet = make_terminal()
    call_command(
        "seed_load", "--users=6", "--rooms=2", "--messages=12", "--verbosity=0", stdout=StringIO(), stderr=quiet
    )
    assert quiet.getvalue() == ""
