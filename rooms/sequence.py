"""The room's event counter: every seq'd event of a room (a message, a change of one, a moderation event)
takes the next `Room.last_seq` here.

`UPDATE rooms_room SET last_seq = last_seq + 1 ... RETURNING last_seq` in the transaction that stores the
event: a rolled-back event gives its seq back, so seq is gapless per room, and the row lock serialises the
room's writers only. With a member id the same UPDATE checks membership and returns the member's history
floor, so neither a send nor a change reads the membership row separately.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from django.db import connection

from core.compiled import CompiledQuery

from .errors import NotRoomMember, RoomNotFound
from .models import Membership, Room, RoomKind, Visibility, is_room_id


class Taken(NamedTuple):
    seq: int
    floor: int  # the member's history floor (rooms.models.history_floor), read under the room's lock; 0 without one


def _active_membership(room_id: int, member_id: int):  # type: ignore[no-untyped-def]
    return Membership.objects.active().filter(room_id=room_id, user_id=member_id)


# The membership rule is the queryset's (Membership.objects.active()) and the floor rule is
# with_history_floor's, both compiled into the seq UPDATE: one round trip, no rule restated here. Compiled
# once (core.compiled): the ORM built both subqueries anew for every send and change.
_IS_MEMBER = CompiledQuery(
    lambda room_id, member_id: _active_membership(room_id, member_id).values("pk"), room_id=int, member_id=int
)
_FLOOR = CompiledQuery(
    lambda room_id, member_id: _active_membership(room_id, member_id).with_history_floor().values("history_floor"),
    room_id=int,
    member_id=int,
)


def next_seq(room_id: int, member_id: int | None) -> Taken | None:
    """Take the room's next seq; with a member id, only if that user is an active member. None: refused."""
    table_room = Room._meta.db_table
    sql = f"UPDATE {table_room} SET last_seq = last_seq + 1 WHERE id = %s"  # noqa: S608
    params: list[Any] = [room_id]
    returning, returning_params = "last_seq, 0", []
    if member_id is not None:
        member_sql, member_params = _IS_MEMBER.sql_with_params(room_id=room_id, member_id=member_id)
        floor_sql, floor_params = _FLOOR.sql_with_params(room_id=room_id, member_id=member_id)
        sql += f" AND EXISTS ({member_sql})"
        params += member_params
        returning, returning_params = f"last_seq, ({floor_sql})", floor_params
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {returning}", params + returning_params)
        row = cursor.fetchone()
    return Taken(int(row[0]), int(row[1] or 0)) if row else None


def take_seq(room_id: int, member_id: int | None) -> Taken:
    """next_seq, or the refusal: RoomNotFound, or NotRoomMember for a user who is not an active member of a
    public room."""
    if not is_room_id(room_id):
        raise RoomNotFound()  # no room can have it: never an overflow error
    taken = next_seq(room_id, member_id)
    if taken is None:
        room = Room.objects.filter(pk=room_id).only("kind", "visibility").first()
        # A private room or DM does not exist for a non-member (rooms.services.require_member's rule).
        if room is None or room.kind != RoomKind.ROOM or room.visibility != Visibility.PUBLIC:
            raise RoomNotFound()
        raise NotRoomMember()
    return taken
