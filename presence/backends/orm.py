"""Presence in the project's database: conditional UPDATEs and upserts, one statement per change."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import DatabaseError, connection
from django.db.models import Count, Max, Q

from presence.models import PresenceConnection, PresenceState

from .base import ConnectionRecord, PresenceBackend, PresenceUnavailable, RoomUserState


def _record(row: PresenceConnection) -> ConnectionRecord:
    return ConnectionRecord(
        connection_id=row.connection_id,
        room_id=int(row.room_id),
        user_id=int(row.user_id),
        process_id=row.process_id,
        connected_at=row.connected_at,
        heartbeat_at=row.heartbeat_at,
    )


class OrmPresenceBackend(PresenceBackend):
    name = "orm"

    def ping(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError as exc:
            raise PresenceUnavailable(str(exc)) from exc

    def _upsert(self, records: list[ConnectionRecord], at: datetime) -> list[str]:
        """One INSERT ... ON CONFLICT DO UPDATE of the heartbeat (atomic per row, also when a reaper deletes a
        row meanwhile: it is inserted again). The read before it only tells which rows are new, for events."""
        if not records:
            return []
        ids = [r.connection_id for r in records]
        present = set(PresenceConnection.objects.filter(connection_id__in=ids).values_list("connection_id", flat=True))
        PresenceConnection.objects.bulk_create(
            [
                PresenceConnection(
                    connection_id=r.connection_id,
                    room_id=r.room_id,
                    user_id=r.user_id,
                    process_id=r.process_id,
                    connected_at=r.connected_at,
                    heartbeat_at=at,
                )
                for r in records
            ],
            update_conflicts=True,
            unique_fields=["connection_id"],
            update_fields=["heartbeat_at", "process_id"],
        )
        return [i for i in ids if i not in present]

    def remove_connection(self, connection_id: str) -> bool:
        deleted, _ = PresenceConnection.objects.filter(connection_id=connection_id).delete()
        return bool(deleted)

    def upsert_connections(self, records: Iterable[ConnectionRecord], at: datetime) -> list[str]:
        created: list[str] = []
        batch = list(records)
        for start in range(0, len(batch), 500):
            created += self._upsert(batch[start : start + 500], at)
        return created

    def remove_connections(self, connection_ids: Iterable[str]) -> list[str]:
        ids = list(connection_ids)
        if len(ids) == 1:
            return ids if self.remove_connection(ids[0]) else []
        present = list(PresenceConnection.objects.filter(connection_id__in=ids).values_list("connection_id", flat=True))
        PresenceConnection.objects.filter(connection_id__in=present).delete()
        return present

    def touch_process(self, process_id: str, at: datetime) -> int:
        return PresenceConnection.objects.filter(process_id=process_id).update(heartbeat_at=at)

    def connections_of_process(self, process_id: str) -> list[ConnectionRecord]:
        return [_record(row) for row in PresenceConnection.objects.filter(process_id=process_id)]

    def stale_connections(self, older_than: datetime, limit: int = 500) -> list[ConnectionRecord]:
        rows = PresenceConnection.objects.filter(heartbeat_at__lt=older_than).order_by("heartbeat_at")[:limit]
        return [_record(row) for row in rows]

    def _ensure_state(self, room_id: int, user_id: int) -> None:
        PresenceState.objects.bulk_create([PresenceState(room_id=room_id, user_id=user_id)], ignore_conflicts=True)

    def mark_absent(self, room_id: int, user_id: int, at: datetime) -> None:
        self._ensure_state(room_id, user_id)
        pair = PresenceState.objects.filter(room_id=room_id, user_id=user_id)
        pair.filter(Q(left_at__isnull=True) | Q(left_at__lt=at)).update(left_at=at)
        pair.filter(Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=at)).update(last_seen_at=at)

    def states(
        self, room_ids: Iterable[int], live_since: datetime, user_ids: Iterable[int] | None = None
    ) -> dict[tuple[int, int], RoomUserState]:
        room_ids = list(room_ids)
        pairs = PresenceState.objects.filter(room_id__in=room_ids)
        connections = PresenceConnection.objects.filter(room_id__in=room_ids, heartbeat_at__gte=live_since)
        if user_ids is not None:
            user_ids = list(user_ids)
            pairs = pairs.filter(user_id__in=user_ids)
            connections = connections.filter(user_id__in=user_ids)
        found: dict[tuple[int, int], RoomUserState] = {}
        for row in pairs:
            found[(int(row.room_id), int(row.user_id))] = RoomUserState(0, row.left_at, row.last_seen_at)
        live = connections.values("room_id", "user_id").annotate(n=Count("connection_id"), seen=Max("heartbeat_at"))
        for row in live:
            key = (int(row["room_id"]), int(row["user_id"]))
            old = found.get(key, RoomUserState(0, None, None))
            seen = max(d for d in (old.last_seen_at, row["seen"]) if d is not None)
            found[key] = RoomUserState(int(row["n"]), old.left_at, seen)
        return found

    def live_connections(self, limit: int = 1000) -> list[ConnectionRecord]:
        return [_record(row) for row in PresenceConnection.objects.order_by("-connected_at")[:limit]]

    def forget_room(self, room_id: int) -> None:
        PresenceConnection.objects.filter(room_id=room_id).delete()
        PresenceState.objects.filter(room_id=room_id).delete()

    def clear(self) -> None:
        PresenceConnection.objects.all().delete()
        PresenceState.objects.all().delete()
