"""GraphQL of messaging: the Room's `unread`, `myRooms`, and `missedMessages`, over messaging.services."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import graphene

from accounts.schema import PublicUser
from core.graphql_errors import domain_errors_as_graphql, graphql_error, require_user
from core.graphql_limits import ListBound
from rooms.models import Room
from rooms.schema import ROOM_TYPE, RoomBatch, show_rooms
from rooms.services import require_member

from . import services

MISSED_DEFAULT_LIMIT = 50
MY_ROOMS_MAX = 200
LIST_BOUNDS = {
    "Query.myRooms": ListBound("first", MY_ROOMS_MAX, MY_ROOMS_MAX),
    "Query.missedMessages": ListBound("limit", MISSED_DEFAULT_LIMIT, services.HISTORY_MAX_LIMIT),
}


class Message(graphene.ObjectType):
    """A stored message (the contract's Message, camelCased); read from messaging.services' dict shape."""

    id = graphene.Int(required=True)
    seq = graphene.Int(required=True)
    kind = graphene.String(required=True, description="TALK, ENTER or LEAVE.")
    body = graphene.String(required=True)
    created_at = graphene.DateTime(required=True)
    sender = graphene.Field(PublicUser, description="Null for a deleted account.")

    @staticmethod
    def resolve_created_at(message: dict[str, Any], info: graphene.ResolveInfo) -> datetime:
        return datetime.fromisoformat(message["created_at"])

    @staticmethod
    def resolve_sender(message: dict[str, Any], info: graphene.ResolveInfo) -> dict[str, Any] | None:
        return message["sender"]


def _unread_for(info: graphene.ResolveInfo, room_ids: list[int]) -> dict[int, int]:
    """The caller's unread counts in those of the rooms they are a member of, in one query."""
    user = require_user(info)
    memberships = services.my_rooms_queryset(user).filter(room_id__in=room_ids)
    return {m.room_id: m.unread for m in memberships}


class RoomFields:
    unread = graphene.Int(
        description="TALK messages from others after the caller's read position; null if not a member."
    )

    @staticmethod
    def resolve_unread(room: Room, info: graphene.ResolveInfo) -> int | None:
        return RoomBatch.of(info).load("unread", room.pk, lambda ids: _unread_for(info, ids))


class Query:
    my_rooms = graphene.List(
        graphene.NonNull(ROOM_TYPE),
        required=True,
        first=graphene.Int(description=f"1 to {MY_ROOMS_MAX}; {MY_ROOMS_MAX} by default."),
    )
    missed_messages = graphene.List(
        graphene.NonNull(Message),
        room_id=graphene.Int(required=True),
        limit=graphene.Int(description=f"1 to {services.HISTORY_MAX_LIMIT}; {MISSED_DEFAULT_LIMIT} by default."),
    )

    @staticmethod
    def resolve_my_rooms(root: Any, info: graphene.ResolveInfo, first: int | None = None) -> list[Room]:
        """The caller's rooms, newest activity first, at most `first`. Read once per request and page size:
        aliases of `myRooms` share one query (and the participants, unread counts they load)."""
        user = require_user(info)
        first = MY_ROOMS_MAX if first is None else first
        if not 1 <= first <= MY_ROOMS_MAX:
            raise graphql_error("validation_error", f"`first` must be 1 to {MY_ROOMS_MAX}.")
        loaded: dict[int, list[Room]] | None = getattr(info.context, "_chattalk_my_rooms", None)
        if loaded is None:
            loaded = info.context._chattalk_my_rooms = {}
        if first not in loaded:
            memberships = list(services.my_rooms_queryset(user)[:first])
            batch = RoomBatch.of(info)
            batch.prime("unread", {m.room_id: m.unread for m in memberships})
            batch.prime("is_member", {m.room_id: True for m in memberships})
            loaded[first] = show_rooms(info, [m.room for m in memberships])
        return loaded[first]

    @staticmethod
    @domain_errors_as_graphql
    def resolve_missed_messages(
        root: Any, info: graphene.ResolveInfo, room_id: int, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Messages after the caller's read position, ascending: what they missed, members only."""
        user = require_user(info)
        limit = MISSED_DEFAULT_LIMIT if limit is None else limit
        if not 1 <= limit <= services.HISTORY_MAX_LIMIT:
            raise graphql_error("validation_error", f"`limit` must be 1 to {services.HISTORY_MAX_LIMIT}.")
        membership = require_member(room_id, user)
        messages, _ = services.history(room_id=room_id, user=user, after_seq=membership.last_read_seq, limit=limit)
        return messages
