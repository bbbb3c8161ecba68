"""The periodic re-check's rounds (realtime.watch, Hub.check_sockets): a round of changes checks only the
sockets of the users and rooms that changed, a full round checks every socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence
from typing import Any

import pytest

from realtime import watch
from realtime.auth import SocketAuth
from realtime.hub import Hub
from realtime.tests.test_hub import ScriptedSource
from realtime.watch import Changes, SocketSnapshot


class OpenLayer:
    """A channel layer that takes every group and never delivers (a pure unit: no Redis)."""

    async def new_channel(self, prefix: str) -> str:
        return f"{prefix}.test"

    async def receive(self, channel: str) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    async def group_add(self, group: str, channel: str) -> None: ...
    async def group_discard(self, group: str, channel: str) -> None: ...


class IdleSocket:
    kind = "chat"

    def __init__(self, user_id: int, room_id: int | None) -> None:
        self.user_id, self.room_id = user_id, room_id
        self.auth = SocketAuth("token", jti=f"jti-{user_id}-{room_id}")
        self.last_activity = time.monotonic()
        self.closed: tuple[int, str] | None = None

    def deliver_event(self, seq: int, text: str) -> None: ...
    def deliver_frame(self, text: str) -> None: ...

    def close_with(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class Recorder:
    """A registered check that refuses the users in `refuse` and records how many snapshots it was given."""

    def __init__(self, changes: Changes | None) -> None:
        self.changes, self.refuse, self.checked = changes, set[int](), []  # type: ignore[var-annotated]
        self.finder_calls = 0

    def check(self, snapshots: Sequence[SocketSnapshot]) -> dict[int, tuple[int, str]]:
        self.checked.append(len(snapshots))
        return {i: (4401, "revoked") for i, s in enumerate(snapshots) if s.user_id in self.refuse}

    def find(self, since: float, room_ids: Collection[int]) -> Changes:
        self.finder_calls += 1
        assert self.changes is not None
        return self.changes


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder(Changes())
    monkeypatch.setattr(watch, "_checks", [recorder.check])
    monkeypatch.setattr(watch, "_change_finders", {recorder.check: recorder.find})
    return recorder


def run_round(recorder: Recorder, since: float | None, sockets: int = 2000) -> list[IdleSocket]:
    async def scenario() -> list[IdleSocket]:
        hub = Hub(ScriptedSource())
        hub.layer = OpenLayer()
        open_sockets = [IdleSocket(user_id=n, room_id=n % 10) for n in range(1, sockets + 1)]
        for socket in open_sockets:
            await hub.add_user_socket(socket)
        try:
            assert await hub.check_sockets(since)
        finally:
            hub.stop()
        return open_sockets

    return asyncio.run(scenario())


def test_a_round_in_which_nothing_changed_checks_no_socket_of_2000(recorder: Recorder) -> None:
    run_round(recorder, since=time.time() - 30)
    assert recorder.finder_calls == 1
    assert recorder.checked == []


def test_a_round_of_changes_checks_only_the_changed_users_sockets_and_closes_the_revoked_one(recorder: Recorder) -> None:
    recorder.changes = Changes(user_ids={7, 8})
    recorder.refuse = {7}
    sockets = run_round(recorder, since=time.time() - 30)
    assert recorder.checked == [2]
    assert [s.user_id for s in sockets if s.closed] == [7]


def test_a_room_that_changed_has_every_one_of_its_sockets_checked(recorder: Recorder) -> None:
    recorder.changes = Changes(room_ids={3})
    recorder.refuse = {3, 13, 1993}
    sockets = run_round(recorder, since=time.time() - 30)
    assert recorder.checked == [200]  # users 3, 13, ... 1993 are the sockets of room 3
    assert sorted(s.user_id for s in sockets if s.closed) == [3, 13, 1993]


def test_a_full_round_checks_every_socket_without_asking_for_changes(recorder: Recorder) -> None:
    recorder.refuse = {1999}
    sockets = run_round(recorder, since=None)
    assert recorder.finder_calls == 0
    assert recorder.checked == [2000]
    assert [s.user_id for s in sockets if s.closed] == [1999]


def test_a_check_registered_without_a_way_to_find_its_changes_makes_every_round_full(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "_change_finders", {recorder.check: None})
    run_round(recorder, since=time.time() - 30, sockets=50)
    assert recorder.checked == [50]
