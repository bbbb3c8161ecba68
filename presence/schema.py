"""GraphQL of presence: the Room's `participants` and `leaveTime`, over presence.services."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import graphene

from core.graphql_errors import domain_errors_as_graphql, require_user
from core.graphql_limits import ListBound
from rooms.models import MAX_MAX_PERSONNEL, Room
from rooms.schema import RoomBatch, caller_is_member, require_room_member
from rooms.services import get_visible_room

from . import services

# Every member of the room, unpaged: charged at the most members a room can have.
LIST_BOUNDS = {"Room.participants": ListBound(None, MAX_MAX_PERSONNEL, MAX_MAX_PERSONNEL)}


class Participant(graphene.ObjectType):
    """A member of the room, connected or not (presence.services.Participant)."""

    username = graphene.String(required=True)
    nickname = graphene.String(required=True)
    connected = graphene.Boolean(required=True)
    connections = graphene.Int(required=True, description="Open chat sockets to the room, on every process.")
    left_at = graphene.DateTime(description="Last socket closed or left the room, whichever is later.")
    last_seen_at = graphene.DateTime()


class RoomFields:
    participants = graphene.List(
        graphene.NonNull(Participant), description="The room's members with their presence; members only."
    )

    @staticmethod
    def resolve_participants(room: Room, info: graphene.ResolveInfo) -> list[services.Participant]:
        require_room_member(info, room.pk)

        def load_many(room_ids: list[int]) -> dict[int, list[services.Participant]]:
            # Only the rooms the caller may see: one store read for all of them.
            return services.participants_for_rooms([r for r in room_ids if caller_is_member(info, r)])

        return RoomBatch.of(info).load("participants", room.pk, load_many) or []


class Query:
    leave_time = graphene.DateTime(
        room_id=graphene.Int(required=True),
        description="The caller's last leave time in the room (last socket closed or left); null if never.",
    )

    @staticmethod
    @domain_errors_as_graphql
    def resolve_leave_time(root: Any, info: graphene.ResolveInfo, room_id: int) -> datetime | None:
        user = require_user(info)
        get_visible_room(room_id, user)  # an unknown room (or a private one to a non-member) is not_found
        return services.left_at(room_id, user.pk)
