"""The room's event counter: every seq'd event of a room (a message, a change of one, a moderation event)
takes the next `Room.last_seq` here.

`UPDATE rooms_room SET last_seq = last_seq + 1 ... RETURNING last_seq` in the transaction that stores the
event: a rolled-back event gives its seq back, so seq is gapless per room, and the row lock serialises the
room's writers only. With a member id the same UPDATE checks membership, so a send costs no extra lookup.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from .errors import NotRoomMember, RoomNotFound
from .models import Membership, Room, RoomKind, Visibility


def next_seq(room_id: int, member_id: int | None) -> int | None:
    """Take the room's next seq; with a member id, only if that user is an active member. None: refused."""
    table_room = Room._meta.db_table
    sql = f"UPDATE {table_room} SET last_seq = last_seq + 1 WHERE id = %s"  # noqa: S608
    params: list[Any] = [room_id]
    if member_id is not None:
        # The membership rule is the queryset's (Membership.objects.active()), compiled into this UPDATE.
        member_sql, member_params = (
            Membership.objects.active().filter(room_id=room_id, user_id=member_id).values("pk").query.sql_with_params()
        )
        sql += f" AND EXISTS ({member_sql})"
        params += list(member_params)
    with connection.cursor() as cursor:
        cursor.execute(sql + " RETURNING last_seq", params)
        row = cursor.fetchone()
    return int(row[0]) if row else None


def take_seq(room_id: int, member_id: int | None) -> int:
    """next_seq, or the refusal: RoomNotFound, or NotRoomMember for a user who is not an active member of a
    public room."""
    seq = next_seq(room_id, member_id)
    if seq is None:
        room = Room.objects.filter(pk=room_id).only("kind", "visibility").first()
        # A private room or DM does not exist for a non-member (rooms.services.require_member's rule).
        if room is None or room.kind != RoomKind.ROOM or room.visibility != Visibility.PUBLIC:
            raise RoomNotFound()
        raise NotRoomMember()
    return seq
