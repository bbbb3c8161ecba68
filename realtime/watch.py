"""The periodic re-check of every open socket: what closes a socket whose close event was lost.

Revocations (logout, deactivation, a password change) and membership ends travel as channel-layer events
that close sockets at once; an event lost in a Redis blip must not leave a socket open for good. Every
CHECK_SECONDS the hub runs the checks that higher apps registered (accounts: credentials; rooms:
membership) in one worker-thread call. Sockets with the same user, credential and room are checked once,
so a user with many tabs costs one row.

Most rounds only look at what changed. An app that registers a check may also register how to find its
changes: a change marker that its services write in the revoking transaction (accounts: the user's
`credentials_changed_at`; rooms: the membership's `left_at`, and rooms that no longer exist), read with one
indexed query. The round then checks only the sockets of the users and rooms named, so 10,000 idle sockets
cost a few small queries every CHECK_SECONDS instead of 10,000 rows and a cache key each. The changes are
read from CHANGE_MARGIN_SECONDS before the previous round, for markers written some time before their
transaction committed and for other hosts' clocks. Every FULL_CHECK_SECONDS a round checks every socket
(the backstop for changes made around the services: raw SQL, a session row deleted by hand), and so does
every round while a registered check has no way to find its changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from .auth import SocketAuth

logger = logging.getLogger(__name__)

CHECK_SECONDS = 5.0
FULL_CHECK_SECONDS = 300.0
CHANGE_MARGIN_SECONDS = 30.0


@dataclass(frozen=True)
class SocketSnapshot:
    user_id: int
    auth: SocketAuth | None
    room_id: int | None


@dataclass
class Changes:
    """Whose sockets a round must check: every socket of these users, and every socket of these rooms."""

    user_ids: set[int] = field(default_factory=set)
    room_ids: set[int] = field(default_factory=set)


# Returns, for the snapshots that no longer hold, their index -> (close code, reason).
SocketCheck = Callable[[Sequence[SocketSnapshot]], dict[int, tuple[int, str]]]
# (since: epoch seconds, the room ids of this process's sockets) -> what changed since then. It must name
# every user and room whose sockets' check could have changed its verdict through the app's services.
ChangeFinder = Callable[[float, Collection[int]], Changes]

_checks: list[SocketCheck] = []
_change_finders: dict[SocketCheck, ChangeFinder | None] = {}


def register_socket_check(check: SocketCheck, changes: ChangeFinder | None = None) -> None:
    """Called once per app at start-up (AppConfig.ready). Without `changes`, every round is a full one."""
    if check not in _checks:
        _checks.append(check)
    _change_finders[check] = changes


def changes_since(since: float, room_ids: Collection[int]) -> Changes | None:
    """Everything the registered checks changed since `since`; None when a check cannot tell (full round)."""
    found = Changes()
    for check in _checks:
        finder = _change_finders.get(check)
        if finder is None:
            return None
        changes = finder(since, room_ids)
        found.user_ids |= changes.user_ids
        found.room_ids |= changes.room_ids
    return found


def failing_snapshots(snapshots: Sequence[SocketSnapshot]) -> dict[SocketSnapshot, tuple[int, str]]:
    """Run every registered check over the distinct snapshots; the first refusal of each wins."""
    distinct = list(dict.fromkeys(snapshots))
    failing: dict[SocketSnapshot, tuple[int, str]] = {}
    for check in _checks:
        for index, verdict in check(distinct).items():
            failing.setdefault(distinct[index], verdict)
    return failing
