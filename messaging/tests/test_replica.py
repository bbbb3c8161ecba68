"""Reads on the streaming replica (DATABASE_REPLICA_URL, `scripts/services.sh start replica`): history pages
and resume replay read what the replica has applied and top up from the primary, so a lagging replica never
shortens them; the hub's gap fill reads the primary only.

The replica lags for as long as a test wants: its replay is paused (pg_wal_replay_pause) while the primary
commits more. Which database served a read is counted per connection (Django's CaptureQueriesContext).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import OperationalError, connections
from django.test.utils import CaptureQueriesContext

from accounts.testing import access_token_for
from core.replica import ReplicaReads
from messaging import services
from messaging.services import (
    delete_message,
    edit_message,
    frames_between,
    history,
    replay_page,
    room_last_seq,
    send_message,
    set_reaction,
)
from messaging.streams import _frames_between, _last_seq
from messaging.testing import InProcessChatClient

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.replica,
    pytest.mark.django_db(transaction=True, databases=["default", "replica"]),
]

MESSAGE_READ = 'FROM "messaging_message"'


def say(room: Any, user: Any, body: str) -> dict[str, Any]:
    return send_message(room_id=room.pk, sender=user, client_id=str(uuid.uuid4()), body=body).message


@contextmanager
def queries_per_database() -> Iterator[dict[str, list[str]]]:
    """The SQL this thread ran, per alias."""
    captured = {alias: CaptureQueriesContext(connections[alias]) for alias in ("default", "replica")}
    found: dict[str, list[str]] = {}
    for context in captured.values():
        context.__enter__()
    try:
        yield found
    finally:
        for alias, context in captured.items():
            context.__exit__(None, None, None)
            found[alias] = [query["sql"] for query in context.captured_queries]


def message_reads(sqls: list[str]) -> int:
    return sum(MESSAGE_READ in sql for sql in sqls)


def on_primary_only(read: Any) -> Any:
    ReplicaReads.enabled = False
    try:
        return read()
    finally:
        ReplicaReads.enabled = True


def test_a_history_page_the_replica_has_applied_is_read_from_the_replica(streaming_replica, room_with_members):
    room, (alice, _bob) = room_with_members(2)
    sent = [say(room, alice, f"m{n}") for n in range(5)]
    streaming_replica.catch_up()
    with queries_per_database() as sql:
        page, has_more = history(room_id=room.pk, user=alice, after_seq=sent[0]["seq"] - 1)
    assert [m["id"] for m in page] == [m["id"] for m in sent] and not has_more
    applied = _last_seq_on_replica(room.pk)
    assert applied == sent[-1]["seq"]
    assert message_reads(sql["replica"]) >= 1
    # The primary answers the membership check, and is asked only for what lies past the replica's copy:
    # messages after it, and messages changed after it.
    primary_reads = [q for q in sql["default"] if MESSAGE_READ in q]
    past_the_copy = re.compile(rf'"messaging_message"\."(seq|last_change_seq)" > {applied}\b')
    assert primary_reads and all(past_the_copy.search(q) for q in primary_reads)


def test_history_pages_stay_complete_while_the_replica_lags_by_reading_the_rest_from_the_primary(
    streaming_replica, room_with_members
):
    room, (alice, bob) = room_with_members(2)
    for n in range(3):
        say(room, alice, f"before {n}")
    streaming_replica.catch_up()
    streaming_replica.pause()
    for n in range(3):
        say(room, bob, f"while paused {n}")
    assert _last_seq_on_replica(room.pk) < room_last_seq(room.pk)

    with queries_per_database() as sql:
        ascending, more_after = history(room_id=room.pk, user=alice, after_seq=0, limit=50)
        newest, more_before = history(room_id=room.pk, user=alice, before_seq=room_last_seq(room.pk) + 1, limit=4)
    primary_ascending, _ = on_primary_only(lambda: history(room_id=room.pk, user=alice, after_seq=0, limit=50))
    primary_newest, _ = on_primary_only(
        lambda: history(room_id=room.pk, user=alice, before_seq=room_last_seq(room.pk) + 1, limit=4)
    )

    assert [m["body"] for m in ascending if m["kind"] == "TALK"][-3:] == [f"while paused {n}" for n in range(3)]
    assert ascending == primary_ascending and not more_after
    assert newest == primary_newest and more_before and len(newest) == 4
    assert message_reads(sql["replica"]) >= 2 and message_reads(sql["default"]) >= 2


def _last_seq_on_replica(room_id: int) -> int:
    return room_last_seq(room_id, using="replica")


def test_resume_replay_pages_read_the_replica_and_the_rest_from_the_primary_while_it_lags(
    streaming_replica, room_with_members
):
    room, (alice, bob) = room_with_members(2)
    first = [say(room, alice, f"before {n}") for n in range(4)]
    streaming_replica.catch_up()
    streaming_replica.pause()
    for n in range(4):
        say(room, bob, f"while paused {n}")
    set_reaction(room_id=room.pk, message_id=first[1]["id"], actor=bob, emoji="tada", on=True)
    up_to_seq = room_last_seq(room.pk)
    applied = _last_seq_on_replica(room.pk)
    assert applied < up_to_seq and applied % 4 != 0

    replayed: list[tuple[int, dict[str, Any]]] = []
    cursor = 0
    with queries_per_database() as sql:
        while True:
            # Pages of 4 do not end where the replica's copy ends: one page is read from both.
            page = replay_page(room_id=room.pk, after_seq=cursor, limit=4, up_to_seq=up_to_seq)
            replayed += page
            if len(page) < 4:
                break
            cursor = page[-1][0]

    everything = frames_between(room_id=room.pk, after_seq=0, up_to_seq=up_to_seq)
    assert [seq for seq, _frame in replayed] == [seq for seq, _frame in everything]
    assert replayed[-1][0] == up_to_seq  # the reaction, read from the primary
    assert [frame for seq, frame in replayed if seq > applied] == [frame for seq, frame in everything if seq > applied]
    assert message_reads(sql["replica"]) >= 1 and message_reads(sql["default"]) >= 1


def test_the_hubs_gap_fill_reads_the_primary_even_while_the_replica_lags(streaming_replica, room_with_members):
    room, (alice, _bob) = room_with_members(2)
    streaming_replica.catch_up()
    streaming_replica.pause()
    sent = [say(room, alice, f"m{n}") for n in range(3)]
    with queries_per_database() as sql:
        last_seq = _last_seq(room.pk)
        filled = _frames_between(room.pk, sent[0]["seq"] - 1, last_seq)
    assert [seq for seq, _frame, _visible in filled] == [m["seq"] for m in sent]
    assert sql["replica"] == []


def test_a_socket_resume_misses_nothing_while_the_replica_lags(
    streaming_replica, room_with_members, ws_connect, monkeypatch
):
    room, (alice, bob) = room_with_members(2)
    for n in range(3):
        say(room, alice, f"before {n}")
    left_at = room_last_seq(room.pk)
    for n in range(3):
        say(room, alice, f"away {n}")
    streaming_replica.catch_up()
    streaming_replica.pause()
    for n in range(3):
        say(room, alice, f"while paused {n}")
    read_on: list[str] = []
    room_events = services._room_events

    def counting_room_events(*args: Any, **kwargs: Any) -> Any:
        read_on.append(kwargs.get("using", "default"))
        return room_events(*args, **kwargs)

    monkeypatch.setattr(services, "_room_events", counting_room_events)

    async def scenario() -> list[dict[str, Any]]:
        back = InProcessChatClient(await ws_connect(f"/ws/rooms/{room.pk}/?after_seq={left_at}", access_token_for(bob)))
        await back.wait_until(lambda c: c.of_type("synced"))
        await back.close()
        return back.frames

    frames = asyncio.run(scenario())
    bodies = [f["message"]["body"] for f in frames if f.get("type") == "message"]
    assert bodies == [f"away {n}" for n in range(3)] + [f"while paused {n}" for n in range(3)]
    assert frames[-1] == {"type": "synced", "last_seq": room_last_seq(room.pk)}
    assert "replica" in read_on and "default" in read_on


def test_a_replica_that_does_not_answer_leaves_history_and_resume_to_the_primary(
    streaming_replica, room_with_members, monkeypatch
):
    room, (alice, _bob) = room_with_members(2)
    for n in range(3):
        say(room, alice, f"m{n}")
    streaming_replica.catch_up()
    expected_history = history(room_id=room.pk, user=alice, after_seq=0)
    up_to_seq = room_last_seq(room.pk)
    expected_replay = replay_page(room_id=room.pk, after_seq=0, limit=100, up_to_seq=up_to_seq)
    room_last_seq_of = services.room_last_seq

    def replica_down(room_id: int, using: str = "default") -> int:
        if using == "replica":
            raise OperationalError("connection refused")
        return room_last_seq_of(room_id, using=using)

    monkeypatch.setattr(services, "room_last_seq", replica_down)
    with queries_per_database() as sql:
        assert history(room_id=room.pk, user=alice, after_seq=0) == expected_history
        assert replay_page(room_id=room.pk, after_seq=0, limit=100, up_to_seq=up_to_seq) == expected_replay
    assert sql["replica"] == []


def test_a_message_changed_after_the_replicas_copy_is_shown_as_the_primary_has_it_and_a_deleted_body_never_travels(
    streaming_replica, room_with_members
):
    room, (alice, bob) = room_with_members(2)
    secret = say(room, alice, "SECRET-ORIGINAL")
    edited = say(room, alice, "typo")
    quoting = send_message(
        room_id=room.pk, sender=bob, client_id=str(uuid.uuid4()), body="quoting", reply_to=secret["id"]
    ).message
    streaming_replica.catch_up()
    streaming_replica.pause()
    delete_message(room_id=room.pk, message_id=secret["id"], actor=alice)
    edit_message(room_id=room.pk, message_id=edited["id"], actor=alice, body="fixed")
    up_to_seq = room_last_seq(room.pk)
    assert _last_seq_on_replica(room.pk) < up_to_seq

    with queries_per_database() as sql:
        page, _ = history(room_id=room.pk, user=bob, after_seq=0)
        replayed = replay_page(room_id=room.pk, after_seq=0, limit=100, up_to_seq=up_to_seq)
    assert message_reads(sql["replica"]) >= 2
    assert "SECRET-ORIGINAL" not in str(page) and "SECRET-ORIGINAL" not in str(replayed)
    shown = {m["id"]: m for m in page}
    assert shown[secret["id"]]["body"] == "" and shown[edited["id"]]["body"] == "fixed"
    assert shown[quoting["id"]]["reply_to"]["deleted"] is True
    assert page == on_primary_only(lambda: history(room_id=room.pk, user=bob, after_seq=0)[0])
    assert replayed == frames_between(room_id=room.pk, after_seq=0, up_to_seq=up_to_seq)
