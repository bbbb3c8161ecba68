"""The one small interface both presence stores implement (MongoDB in deployment, the ORM embedded).

The store keeps two kinds of record, both small:
- one per live chat socket: {connection_id, room_id, user_id, process_id, connected_at, heartbeat_at};
  a user's connection count is the number of these records, so it is never a counter that can drift;
- one per (room, user): {left_at, last_seen_at}, moved only forward ($max / conditional UPDATE).
Every method is one atomic operation per record (upsert, delete, conditional update): no read-modify-write,
so any number of processes may act at once. Deciding what a change means (left_at, events, frames) is the
job of presence.services, written once for both stores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


class PresenceUnavailable(Exception):
    """The store cannot be reached: presence is degraded, chat goes on."""


@dataclass(frozen=True)
class ConnectionRecord:
    connection_id: str
    room_id: int
    user_id: int
    process_id: str
    connected_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True)
class RoomUserState:
    """What the store knows of one user in one room; connections counts live records only."""

    connections: int
    left_at: datetime | None
    last_seen_at: datetime | None


class PresenceBackend(ABC):
    name: str = ""

    @abstractmethod
    def ping(self) -> None:
        """Raise if the store does not answer (for /readyz)."""

    @abstractmethod
    def upsert_connections(self, records: Iterable[ConnectionRecord], at: datetime) -> list[str]:
        """Upsert live connections with heartbeat `at` (one atomic upsert per record, sent in bulk).

        Returns the ids this call created: new sockets, or sockets the store had lost (reaped while their
        process stalled, or opened while the store was away)."""

    @abstractmethod
    def remove_connection(self, connection_id: str) -> bool:
        """Delete one connection; True only for the one caller whose delete removed it (reapers race)."""

    @abstractmethod
    def remove_connections(self, connection_ids: Iterable[str]) -> list[str]:
        """Delete connections of this process in bulk; returns the ids that were there. (With more than one id
        the ids are found just before one delete: a reaper removing one of them in that instant reports it
        too, which is a duplicate disconnect event, never a missed one. Fresh sockets are never reaped.)"""

    @abstractmethod
    def touch_process(self, process_id: str, at: datetime) -> int:
        """Set the heartbeat of every record of one process to `at` in one write; returns how many there are."""

    @abstractmethod
    def connections_of_process(self, process_id: str) -> list[ConnectionRecord]:
        """Every record the store holds for one process."""

    @abstractmethod
    def stale_connections(self, older_than: datetime, limit: int = 500) -> list[ConnectionRecord]:
        """Connections whose heartbeat is older than `older_than`: their process stopped refreshing them."""

    @abstractmethod
    def mark_absent(self, room_id: int, user_id: int, at: datetime) -> None:
        """left_at and last_seen_at move forward to `at` (never back)."""

    @abstractmethod
    def states(
        self, room_ids: Iterable[int], live_since: datetime, user_ids: Iterable[int] | None = None
    ) -> dict[tuple[int, int], RoomUserState]:
        """(room_id, user_id) -> state for every pair the store knows in these rooms (of these users only, when
        given: a change reads its own user, never the whole room).

        Connections whose heartbeat is older than `live_since` are not counted even before the reaper
        removes them, so a dead process's sockets never show, whichever process reaps."""

    @abstractmethod
    def live_connections(self, limit: int = 1000) -> list[ConnectionRecord]:
        """Every live connection (admin view), newest first."""

    @abstractmethod
    def forget_room(self, room_id: int) -> None:
        """Drop every record of a deleted room."""

    @abstractmethod
    def clear(self) -> None:
        """Drop everything (tests only)."""
