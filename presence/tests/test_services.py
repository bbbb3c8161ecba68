"""The presence domain against each store (parametrized: ORM always, MongoDB in the real-service run)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from events.models import OutboxEvent
from presence import services
from presence.backends import ConnectionRecord
from rooms.services import leave_room

from .factories import make_room, make_user

pytestmark = pytest.mark.django_db


def _me(room_id: int, user_id: int) -> services.Participant:
    return next(p for p in services.participants_for_rooms([room_id])[room_id] if p.user_id == user_id)


def _open(room_id: int, user_id: int, connection_id: str, process_id: str = "p1", **kwargs) -> list:
    return services.connection_opened(
        room_id=room_id, user_id=user_id, connection_id=connection_id, process_id=process_id, **kwargs
    )


def _close(room_id: int, user_id: int, connection_id: str, **kwargs) -> list:
    return services.connection_closed(room_id=room_id, user_id=user_id, connection_id=connection_id, **kwargs)


def test_two_tabs_count_two_closing_one_keeps_connected_closing_both_sets_left_at(presence_backend):
    alice = make_user("alice")
    room = make_room(alice)
    assert _me(room.pk, alice.pk).connected is False
    assert services.left_at(room.pk, alice.pk) is None

    _open(room.pk, alice.pk, "tab1")
    _open(room.pk, alice.pk, "tab2")
    two = _me(room.pk, alice.pk)
    assert (two.connected, two.connections, two.left_at) == (True, 2, None)
    assert two.last_seen_at is not None

    _close(room.pk, alice.pk, "tab1")
    one = _me(room.pk, alice.pk)
    assert (one.connected, one.connections, one.left_at) == (True, 1, None)

    before = timezone.now()
    _close(room.pk, alice.pk, "tab2")
    gone = _me(room.pk, alice.pk)
    assert (gone.connected, gone.connections) == (False, 0)
    assert gone.left_at is not None and gone.left_at >= before - timedelta(seconds=1)
    assert services.left_at(room.pk, alice.pk) == gone.left_at


def test_every_change_is_recorded_as_a_presence_event_once(presence_backend):
    alice = make_user("alice")
    room = make_room(alice)
    OutboxEvent.objects.all().delete()
    assert len(_open(room.pk, alice.pk, "tab1")) == 1
    assert _open(room.pk, alice.pk, "tab1") == []  # the same socket again is no change
    assert len(_close(room.pk, alice.pk, "tab1")) == 1
    assert _close(room.pk, alice.pk, "tab1") == []  # closing twice (or after a reap) is no change
    events = list(OutboxEvent.objects.filter(room_id=room.pk).order_by("id"))
    assert [e.event_type for e in events] == ["presence.connected", "presence.disconnected"]
    assert events[0].topic == "chattalk.presence"
    assert events[0].payload["data"]["connections"] == 1 and events[0].payload["data"]["user"]["id"] == alice.pk
    assert events[1].payload["data"]["connected"] is False


def test_participants_are_the_members_connected_or_not(presence_backend):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    room = make_room(alice, bob)
    other = make_room(carol)
    _open(room.pk, bob.pk, "b1")
    found = services.participants_for_rooms([room.pk, other.pk, 999_999])
    assert {p.user_id: p.connected for p in found[room.pk]} == {alice.pk: False, bob.pk: True}
    assert [p.user_id for p in found[other.pk]] == [carol.pk]
    assert found[999_999] == []


def test_left_at_is_the_later_of_last_socket_closed_and_leaving_the_room(presence_backend):
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room(alice, bob)
    _open(room.pk, bob.pk, "b1")
    _close(room.pk, bob.pk, "b1", at=timezone.now() - timedelta(minutes=5))
    closed_at = services.left_at(room.pk, bob.pk)
    leave_room(room_id=room.pk, user=bob)
    left = services.left_at(room.pk, bob.pk)
    assert left is not None and closed_at is not None and left > closed_at
    # A socket that closes after the leave moves it forward again.
    later = services.store_time(timezone.now() + timedelta(seconds=30))
    _open(room.pk, bob.pk, "b2")
    _close(room.pk, bob.pk, "b2", at=later)
    assert services.left_at(room.pk, bob.pk) == later
    assert bob.pk not in {p.user_id for p in services.participants_for_rooms([room.pk])[room.pk]}


def test_a_connection_whose_heartbeat_is_too_old_is_not_counted_and_is_reaped_once(presence_backend, settings):
    alice = make_user("alice")
    room = make_room(alice)
    long_ago = timezone.now() - timedelta(seconds=settings.PRESENCE_TIMEOUT_SECONDS + 5)
    _open(room.pk, alice.pk, "dead-tab", process_id="killed", at=long_ago)
    _open(room.pk, alice.pk, "live-tab", process_id="alive")
    assert _me(room.pk, alice.pk).connections == 1  # the dead process's socket never shows

    changes = services.reap_stale_connections()
    assert [c.connection_id for c in changes] == ["dead-tab"]
    assert services.reap_stale_connections() == []  # a second reaper finds nothing to report
    assert _me(room.pk, alice.pk).left_at is None  # still connected through the live tab

    services.connection_closed(room_id=room.pk, user_id=alice.pk, connection_id="live-tab")
    _open(room.pk, alice.pk, "dead-2", process_id="killed", at=long_ago)
    services.reap_stale_connections()
    me = _me(room.pk, alice.pk)
    assert not me.connected
    assert me.left_at is not None


def test_a_reaped_user_left_at_their_last_heartbeat(presence_backend, settings):
    alice = make_user("alice")
    room = make_room(alice)
    last_beat = timezone.now() - timedelta(seconds=settings.PRESENCE_TIMEOUT_SECONDS + 5)
    _open(room.pk, alice.pk, "dead-tab", process_id="killed", at=last_beat)
    services.reap_stale_connections()
    left = services.left_at(room.pk, alice.pk)
    assert left is not None and abs((left - last_beat).total_seconds()) < 0.01


def test_heartbeat_sync_re_registers_lost_sockets_and_forgets_closed_ones(presence_backend):
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room(alice, bob)
    now = timezone.now()
    _open(room.pk, alice.pk, "a1", process_id="me")
    _open(room.pk, bob.pk, "b1", process_id="me")
    _open(room.pk, bob.pk, "b-other", process_id="someone-else")
    # While the store was away: a1 closed here, and a2 opened here without reaching the store.
    still_open = [
        ConnectionRecord("b1", room.pk, bob.pk, "me", now, now),
        ConnectionRecord("a2", room.pk, alice.pk, "me", now, now),
    ]
    changes = services.sync_process(process_id="me", open_connections=still_open)
    assert sorted((c.kind, c.connection_id) for c in changes) == [
        ("presence.connected", "a2"),
        ("presence.disconnected", "a1"),
    ]
    assert _me(room.pk, alice.pk).connections == 1
    assert _me(room.pk, bob.pk).connections == 2  # another process's socket is never touched
    assert services.sync_process(process_id="me", open_connections=still_open) == []


def test_a_steady_heartbeat_refreshes_every_record_in_one_write_and_reconciles_only_when_counts_differ(
    presence_backend,
):
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room(alice, bob)
    earlier = timezone.now() - timedelta(seconds=10)
    _open(room.pk, alice.pk, "a1", process_id="me", at=earlier)
    _open(room.pk, bob.pk, "b1", process_id="me", at=earlier)
    records = {r.connection_id: r for r in presence_backend.connections_of_process("me")}
    now = timezone.now()
    calls: list[str] = []
    real_upsert = presence_backend.upsert_connections

    def counting_upsert(*args, **kwargs):
        calls.append("upsert")
        return real_upsert(*args, **kwargs)

    presence_backend.upsert_connections = counting_upsert  # type: ignore[method-assign]
    assert services.sync_process(process_id="me", open_connections=records.values(), at=now, reconcile=False) == []
    assert calls == [], "in step: no per-socket upsert"
    assert all(abs((r.heartbeat_at - now).total_seconds()) < 0.01 for r in presence_backend.connections_of_process("me"))

    presence_backend.remove_connection("a1")  # the store lost one (reaped while this process stalled)
    changes = services.sync_process(process_id="me", open_connections=records.values(), reconcile=False)
    assert calls == ["upsert"] and [(c.kind, c.connection_id) for c in changes] == [("presence.connected", "a1")]
    assert {r.connection_id for r in presence_backend.connections_of_process("me")} == {"a1", "b1"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_closes_of_one_socket_report_one_change(presence_backend):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    alice = make_user("alice")
    room = make_room(alice)
    _open(room.pk, alice.pk, "tab")

    def remove(_: int) -> bool:
        try:
            return presence_backend.remove_connection("tab")
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        removed = list(pool.map(remove, range(8)))
    assert removed.count(True) == 1


def test_a_deleted_room_leaves_no_presence_records(presence_backend):
    from rooms.services import delete_room

    alice = make_user("alice")
    room = make_room(alice)
    _open(room.pk, alice.pk, "tab")
    delete_room(room_id=room.pk, actor=alice)
    services.room_deleted(room.pk)  # what the room_deleting receiver runs after the commit
    assert presence_backend.live_connections() == []


def test_participants_for_many_rooms_cost_what_one_room_costs(presence_backend):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    alice, bob = make_user("alice"), make_user("bob")
    rooms = [make_room(alice, bob) for _ in range(4)]
    _open(rooms[0].pk, bob.pk, "b1")
    with CaptureQueriesContext(connection) as one:
        services.participants_for_rooms([rooms[0].pk])
    with CaptureQueriesContext(connection) as four:
        found = services.participants_for_rooms([r.pk for r in rooms])
    assert len(four) == len(one) <= 3
    assert all(len(found[r.pk]) == 2 for r in rooms)


def test_a_burst_of_socket_changes_is_applied_in_bulk_with_one_event_per_change(presence_backend):
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room(alice, bob)
    now = services.store_time()
    OutboxEvent.objects.all().delete()

    def rec(connection_id: str, user) -> ConnectionRecord:
        return ConnectionRecord(connection_id, room.pk, user.pk, "p1", now, now)

    changes = services.apply_socket_changes(
        opened=[rec("a1", alice), rec("a2", alice), rec("b1", bob), rec("flash", bob)],
        closed=[(rec("flash", bob), now), (rec("never-opened", bob), now)],
    )
    assert sorted((c.kind, c.connection_id) for c in changes) == [
        ("presence.connected", "a1"),
        ("presence.connected", "a2"),
        ("presence.connected", "b1"),
        ("presence.connected", "flash"),
        ("presence.disconnected", "flash"),  # opened and closed within the burst: nothing left behind
    ]
    assert {c.participant.user_id: c.participant.connections for c in changes} == {alice.pk: 2, bob.pk: 1}
    assert OutboxEvent.objects.filter(room_id=room.pk, event_type__startswith="presence.").count() == 5
    assert {r.connection_id for r in presence_backend.live_connections()} == {"a1", "a2", "b1"}
    assert _me(room.pk, bob.pk).left_at is None  # bob kept a socket: he never stopped being present
