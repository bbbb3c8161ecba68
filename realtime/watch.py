"""The periodic re-check of every open socket: what closes a socket whose close event was lost.

Revocations (logout, deactivation, a password change) and membership ends travel as channel-layer events
that close sockets at once; an event lost in a Redis blip must not leave a socket open for good. Every
CHECK_SECONDS the hub hands a snapshot of its sockets to the checks that higher apps registered (accounts:
credentials; rooms: membership), all in one worker-thread call. Sockets with the same user, credential and
room are checked once, so a user with many tabs costs one row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .auth import SocketAuth

logger = logging.getLogger(__name__)

CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class SocketSnapshot:
    user_id: int
    auth: SocketAuth | None
    room_id: int | None


# Returns, for the snapshots that no longer hold, their index -> (close code, reason).
SocketCheck = Callable[[Sequence[SocketSnapshot]], dict[int, tuple[int, str]]]

_checks: list[SocketCheck] = []


def register_socket_check(check: SocketCheck) -> None:
    """Called once per app at start-up (AppConfig.ready)."""
    if check not in _checks:
        _checks.append(check)


def failing_snapshots(snapshots: Sequence[SocketSnapshot]) -> dict[SocketSnapshot, tuple[int, str]]:
    """Run every registered check over the distinct snapshots; the first refusal of each wins."""
    distinct = list(dict.fromkeys(snapshots))
    failing: dict[SocketSnapshot, tuple[int, str]] = {}
    for check in _checks:
        for index, verdict in check(distinct).items():
            failing.setdefault(distinct[index], verdict)
    return failing
