"""The per-process tracker: never blocks or raises into chat, degrades when the store is away, and
re-registers this process's open sockets by itself when it returns (the store here is the ORM one, made
unreachable on demand; the real-MongoDB version of this is test_mongo_outage)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time

import pytest
from django.utils import timezone

from presence import services
from presence.backends import PresenceUnavailable, set_presence_backend_for_tests
from presence.backends.orm import OrmPresenceBackend
from presence.tracker import PresenceTracker

from .factories import make_room, make_user

pytestmark = pytest.mark.django_db(transaction=True)


class UnplugableBackend(OrmPresenceBackend):
    """The ORM store with a switch that makes every call fail as an unreachable MongoDB would."""

    down = False

    def __getattribute__(self, name: str):
        attribute = super().__getattribute__(name)
        if callable(attribute) and not name.startswith("_") and name != "clear" and super().__getattribute__("down"):
            raise PresenceUnavailable("unplugged by the test")
        return attribute


async def _until(predicate, timeout: float = 10.0) -> None:
    """Wait until predicate() (a value or an awaitable) is true."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_tracker_degrades_without_raising_and_re_registers_open_sockets_when_the_store_returns(settings, caplog):
    settings.PRESENCE_HEARTBEAT_SECONDS = 1
    settings.PRESENCE_TIMEOUT_SECONDS = 4
    alice = make_user("alice")
    room = make_room(alice)
    backend = UnplugableBackend()
    backend.clear()
    set_presence_backend_for_tests(backend)
    tracker = PresenceTracker()

    def read_store() -> set[str]:
        from django.db import connection

        backend.down, was = False, backend.down
        try:
            return {r.connection_id for r in backend.live_connections()}
        finally:
            backend.down = was
            connection.close()

    async def stored() -> set[str]:
        return await asyncio.to_thread(read_store)

    def left_at_of_alice():
        from django.db import connection

        try:
            return services.left_at(room.pk, alice.pk)
        finally:
            connection.close()

    async def stored_is(expected: set[str]) -> bool:
        return await stored() == expected

    async def scenario() -> None:
        tracker.socket_opened(room.pk, alice.pk, "t1")
        await _until(lambda: stored_is({"t1"}))

        backend.down = True
        tracker.socket_opened(room.pk, alice.pk, "t2")  # returns at once, raises nothing
        await _until(lambda: tracker.degraded)
        started = time.monotonic()
        await tracker.socket_closed(room.pk, alice.pk, "t1")  # skipped while degraded, and quick
        assert time.monotonic() - started < 1.0
        assert await stored() == {"t1"}

        backend.down = False
        await _until(lambda: not tracker.degraded)
        await _until(lambda: stored_is({"t2"}))

        # The last socket closes while the store is away: left_at is when it closed, not when it came back.
        backend.down = True
        tracker.socket_opened(room.pk, alice.pk, "t3")
        await _until(lambda: tracker.degraded)
        await tracker.socket_closed(room.pk, alice.pk, "t3")
        await tracker.socket_closed(room.pk, alice.pk, "t2")
        closed_at = timezone.now()
        await asyncio.sleep(1.5)
        backend.down = False
        await _until(lambda: not tracker.degraded)
        await _until(lambda: stored_is(set()))
        left = await asyncio.to_thread(left_at_of_alice)
        assert left is not None and abs((left - closed_at).total_seconds()) < 0.5
        for task in tracker._tasks:
            task.cancel()

    with caplog.at_level(logging.WARNING, logger="presence.tracker"):
        try:
            asyncio.run(scenario())
        finally:
            set_presence_backend_for_tests(None)
            backend.clear()
    text = caplog.text
    assert "presence degraded" in text and "presence recovered" in text


def test_a_burst_of_opens_is_published_as_one_event_per_room_naming_each_user_once(monkeypatch):
    """Thousands of sockets opening at once must not queue a group_send per user one after another (at a
    Redis round trip each, the tail of a connect burst kept the server busy for a minute after the last
    socket opened: docs/BENCHMARKS.md)."""
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    first, second = make_room(alice, bob), make_room(carol)
    backend = OrmPresenceBackend()
    backend.clear()
    set_presence_backend_for_tests(backend)
    tracker = PresenceTracker()
    sent: list[tuple[str, dict]] = []

    async def record(group: str, event: dict) -> None:
        sent.append((group, event))

    monkeypatch.setattr(services.realtime_publish, "apublish", record)

    async def scenario() -> None:
        # All queued before the worker first runs: one batch.
        tracker.socket_opened(first.pk, alice.pk, "a1")
        tracker.socket_opened(first.pk, alice.pk, "a2")  # a second tab: still one entry for alice
        tracker.socket_opened(first.pk, bob.pk, "b1")
        tracker.socket_opened(second.pk, carol.pk, "c1")
        await _until(lambda: len(sent) >= 2)
        await asyncio.sleep(0.2)  # nothing else follows
        for task in tracker._tasks:
            task.cancel()

    try:
        asyncio.run(scenario())
    finally:
        set_presence_backend_for_tests(None)
        backend.clear()
    by_group = {group: event for group, event in sent}
    assert len(sent) == 2 and set(by_group) == {services.presence_group(first.pk), services.presence_group(second.pk)}
    named = {g: [p["user"]["id"] for p in services.event_participants(e)] for g, e in by_group.items()}
    assert sorted(named[services.presence_group(first.pk)]) == sorted([alice.pk, bob.pk])
    assert named[services.presence_group(second.pk)] == [carol.pk]
    alice_now = next(
        p for p in by_group[services.presence_group(first.pk)]["participants"] if p["user"]["id"] == alice.pk
    )
    assert alice_now["connections"] == 2  # the state after the whole batch


def test_a_presence_feed_reads_every_user_a_change_event_names_once_whichever_release_published_it(monkeypatch):
    """One event naming many users is one re-read; the previous release's one-user event still works."""
    from presence import consumers

    reads: list[list[int]] = []

    async def participants_of(room_id: int, user_ids: list[int]) -> dict:
        reads.append(sorted(user_ids))
        return {}

    monkeypatch.setattr(consumers, "participants_of_async", participants_of)
    feed = consumers.RoomPresenceFeed(7)

    def participant(user_id: int) -> dict:
        return {"user": {"id": user_id}, "connected": True}

    async def scenario() -> None:
        feed.hub_event({"type": "presence.changed", "room_id": 7, "participants": [participant(1), participant(2)]})
        feed.hub_event({"type": "presence.changed", "room_id": 7, "participant": participant(3)})
        await feed._refreshing

    asyncio.run(scenario())
    assert reads == [[1, 2, 3]]
