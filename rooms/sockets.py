"""Sockets of one room (chat and presence): members only, and a re-check that membership still holds.

The re-check (registered with realtime.watch) closes the socket of a member who left or was removed when
the close event for it was lost in transit: membership, like credentials, is checked again every few
seconds in one query for all the sockets of a process.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from realtime.frames import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND
from realtime.sockets import SocketBase, in_worker_thread
from realtime.watch import Changes, SocketSnapshot

from .models import Membership, Room, history_floor
from .services import NotRoomMember, RoomNotFound, require_member


def _access(room_id: int, user: object) -> tuple[tuple[int, str] | None, int]:
    """(refusal or None, the member's history floor). A private room or DM is 4404 to a non-member."""
    try:
        membership = require_member(room_id, user)  # type: ignore[arg-type]
    except RoomNotFound:
        return (CLOSE_NOT_FOUND, "room not found"), 0
    except NotRoomMember:
        return (CLOSE_FORBIDDEN, "not a member of this room"), 0
    return None, history_floor(membership)


room_access = in_worker_thread(_access)


class RoomMemberSocket(SocketBase):
    """A socket at /ws/rooms/{id}/...: open to the room's active members only.

    `history_floor`: the highest seq this member may not read (rooms.models.history_floor), read with
    each access check."""

    history_floor = 0

    def init_socket(self) -> None:
        super().init_socket()
        self.room_id = int(self.scope["url_route"]["kwargs"]["room_id"])

    async def check_access(self) -> tuple[int, str] | None:
        assert self.room_id is not None
        refusal, self.history_floor = await room_access(self.room_id, self.user)
        return refusal


def ended_memberships(snapshots: Sequence[SocketSnapshot]) -> dict[int, tuple[int, str]]:
    """The periodic re-check: room sockets whose user is no longer an active member (4403), or whose room
    is gone (4404)."""
    pairs = {(s.room_id, s.user_id) for s in snapshots if s.room_id is not None}
    if not pairs:
        return {}
    room_ids = {room_id for room_id, _ in pairs}
    user_ids = {user_id for _, user_id in pairs}
    active = set(
        Membership.objects.active()
        .filter(room_id__any=list(room_ids), user_id__any=list(user_ids))
        .values_list("room_id", "user_id")
    )
    existing = set(Room.objects.filter(pk__any=list(room_ids)).values_list("pk", flat=True))
    refused: dict[int, tuple[int, str]] = {}
    for index, snapshot in enumerate(snapshots):
        if snapshot.room_id is None or (snapshot.room_id, snapshot.user_id) in active:
            continue
        if snapshot.room_id not in existing:
            refused[index] = (CLOSE_NOT_FOUND, "the room was deleted")
        else:
            refused[index] = (CLOSE_FORBIDDEN, "no longer a member of this room")
    return refused


def membership_changes(since: float, room_ids: Collection[int]) -> Changes:
    """realtime.watch's changes of membership: users whose membership ended at or after `since` (leave and
    removal set left_at in their transaction), and the rooms of this process's sockets that are gone."""
    ended = Membership.objects.filter(left_at__gte=datetime.fromtimestamp(since, tz=UTC)).values_list(
        "user_id", flat=True
    )
    existing = set(Room.objects.filter(pk__any=list(room_ids)).values_list("pk", flat=True)) if room_ids else set()
    return Changes(user_ids=set(ended), room_ids=set(room_ids) - existing)
