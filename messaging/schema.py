"""GraphQL of messaging: the Room's `unread` and `mentions`, `myRooms`, `missedMessages`, and the message
mutations (send, edit, delete, react), over messaging.services.

Mutations answer refusals as data, like joinRoom: {ok, message, error} with `error` a contract code
(forbidden, not_found, not_member, message_deleted, too_many_reactions, invalid_reply, rate_limited, ...).
Every one of them counts against the per-user write limit that sends, edits and reactions share on every
edge (messaging.limits.MESSAGE_SENDS)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import graphene
from django.conf import settings

from accounts.schema import PublicUser
from core.domain import DomainError
from core.graphql_errors import current_user, domain_errors_as_graphql, graphql_error, require_user
from core.graphql_limits import ListBound
from rooms.models import Room
from rooms.schema import ROOM_TYPE, RoomBatch, show_rooms
from rooms.services import require_member

from . import services
from .limits import MESSAGE_SEARCHES, MESSAGE_SENDS
from .models import MAX_DISTINCT_REACTIONS, MAX_REACTION_USERS_SHOWN
from .search import QUERY_MAX_CHARS, SearchFilters, search_messages

MISSED_DEFAULT_LIMIT = 50
MY_ROOMS_MAX = 200
SEARCH_DEFAULT_FIRST = 20
SEARCH_MAX_FIRST = 50
SEARCH_MAX_OFFSET = 1000
LIST_BOUNDS = {
    "Query.myRooms": ListBound("first", MY_ROOMS_MAX, MY_ROOMS_MAX),
    "Query.missedMessages": ListBound("limit", MISSED_DEFAULT_LIMIT, services.HISTORY_MAX_LIMIT),
    "SearchResults.results": ListBound(None, SEARCH_MAX_FIRST, SEARCH_MAX_FIRST),
    "Message.reactions": ListBound(None, MAX_DISTINCT_REACTIONS, MAX_DISTINCT_REACTIONS),
    "Reaction.users": ListBound(None, MAX_REACTION_USERS_SHOWN, MAX_REACTION_USERS_SHOWN),
    "Message.mentions": ListBound(None, services.MAX_MENTIONS_PER_MESSAGE, services.MAX_MENTIONS_PER_MESSAGE),
    # The send's own limit (messaging.attachments.clean_attachment_ids), read from the same setting.
    "Message.attachments": ListBound(None, settings.ATTACHMENT_MAX_PER_MESSAGE, settings.ATTACHMENT_MAX_PER_MESSAGE),
}


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class ReplyTo(graphene.ObjectType):
    """The message a reply answers, as it is now (deleted: no excerpt)."""

    id = graphene.Int(required=True)
    seq = graphene.Int(required=True)
    sender = graphene.Field(PublicUser)
    excerpt = graphene.String(required=True, description="At most 100 characters of its current body.")
    deleted = graphene.Boolean(required=True)


class Reaction(graphene.ObjectType):
    emoji = graphene.String(required=True)
    count = graphene.Int(required=True)
    users = graphene.List(
        graphene.NonNull(graphene.Int), required=True, description=f"At most {MAX_REACTION_USERS_SHOWN} user ids."
    )
    me = graphene.Boolean(required=True, description="Whether the caller reacted with this emoji.")

    @staticmethod
    def resolve_me(reaction: dict[str, Any], info: graphene.ResolveInfo) -> bool:
        return bool(reaction.get("me", False))


class Attachment(graphene.ObjectType):
    """A file sent with a message; `url` and `thumbnailUrl` are signed links, fresh on every read."""

    id = graphene.Int(required=True)
    name = graphene.String(required=True)
    size = graphene.Int(required=True)
    content_type = graphene.String(required=True)
    width = graphene.Int()
    height = graphene.Int()
    url = graphene.String(required=True)
    thumbnail_url = graphene.String()


class Message(graphene.ObjectType):
    """A stored message (the contract's Message, camelCased); read from messaging.services' dict shape."""

    id = graphene.Int(required=True)
    seq = graphene.Int(required=True)
    client_id = graphene.String(required=True)
    kind = graphene.String(required=True, description="TALK, ENTER or LEAVE.")
    body = graphene.String(required=True, description="Empty once the message is deleted.")
    created_at = graphene.DateTime(required=True)
    edited_at = graphene.DateTime(description="When its body was last edited; null if never.")
    deleted_at = graphene.DateTime(description="When it was deleted; null if it was not.")
    sender = graphene.Field(PublicUser, description="Null for a deleted account.")
    reply_to = graphene.Field(ReplyTo, description="The message this one answers, or null.")
    reactions = graphene.List(
        graphene.NonNull(Reaction), required=True, description=f"At most {MAX_DISTINCT_REACTIONS} emoji."
    )
    mentions = graphene.List(graphene.NonNull(graphene.Int), required=True, description="Ids of mentioned users.")
    attachments = graphene.List(graphene.NonNull(Attachment), required=True)

    @staticmethod
    def resolve_created_at(message: dict[str, Any], info: graphene.ResolveInfo) -> datetime:
        return datetime.fromisoformat(message["created_at"])

    @staticmethod
    def resolve_edited_at(message: dict[str, Any], info: graphene.ResolveInfo) -> datetime | None:
        return _time(message["edited_at"])

    @staticmethod
    def resolve_deleted_at(message: dict[str, Any], info: graphene.ResolveInfo) -> datetime | None:
        return _time(message["deleted_at"])

    @staticmethod
    def resolve_sender(message: dict[str, Any], info: graphene.ResolveInfo) -> dict[str, Any] | None:
        return message["sender"]


def _counts_loader(info: graphene.ResolveInfo, name: str) -> Any:
    """Load the caller's unread and mention counts of every room of the response in one query, both at once
    (whichever field asks first); null for rooms the caller is not a member of."""

    def load_many(room_ids: list[int]) -> dict[int, int]:
        user = require_user(info)
        memberships = list(services.my_rooms_queryset(user).filter(room_id__in=room_ids))
        batch = RoomBatch.of(info)
        batch.prime("unread", {r: None for r in room_ids} | {m.room_id: m.unread for m in memberships})
        batch.prime("mentions", {r: None for r in room_ids} | {m.room_id: m.mentions for m in memberships})
        return {m.room_id: getattr(m, name) for m in memberships}

    return load_many


class RoomFields:
    unread = graphene.Int(
        description="TALK messages from others after the caller's read position; null if not a member."
    )
    mentions = graphene.Int(description="Unread messages that mention the caller; null if not a member.")

    @staticmethod
    def resolve_unread(room: Room, info: graphene.ResolveInfo) -> int | None:
        return RoomBatch.of(info).load("unread", room.pk, _counts_loader(info, "unread"))

    @staticmethod
    def resolve_mentions(room: Room, info: graphene.ResolveInfo) -> int | None:
        return RoomBatch.of(info).load("mentions", room.pk, _counts_loader(info, "mentions"))


class SearchRoom(graphene.ObjectType):
    id = graphene.Int(required=True)
    title = graphene.String(required=True)
    kind = graphene.String(required=True)


class SearchHit(graphene.ObjectType):
    message = graphene.Field(graphene.NonNull(Message))
    room = graphene.Field(graphene.NonNull(SearchRoom))
    snippet = graphene.String(required=True, description="Escaped text; hits wrapped in <mark>.")


class SearchResults(graphene.ObjectType):
    count = graphene.Int(required=True)
    results = graphene.List(graphene.NonNull(SearchHit), required=True)


class SearchQuery:
    search_messages = graphene.Field(
        graphene.NonNull(SearchResults),
        q=graphene.String(required=True, description=f"1 to {QUERY_MAX_CHARS} characters."),
        room_id=graphene.Int(),
        sender_id=graphene.Int(),
        after=graphene.DateTime(),
        before=graphene.DateTime(),
        has_attachment=graphene.Boolean(),
        first=graphene.Int(description=f"1 to {SEARCH_MAX_FIRST}; {SEARCH_DEFAULT_FIRST} by default."),
        offset=graphene.Int(description=f"0 to {SEARCH_MAX_OFFSET}."),
    )

    @staticmethod
    @domain_errors_as_graphql
    def resolve_search_messages(
        root: Any,
        info: graphene.ResolveInfo,
        q: str,
        room_id: int | None = None,
        sender_id: int | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        has_attachment: bool | None = None,
        first: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        """The REST search's results (the same rules: readable messages only, ranked), `first` from `offset`."""
        user = require_user(info)
        first = SEARCH_DEFAULT_FIRST if first is None else first
        offset = 0 if offset is None else offset
        if not 1 <= first <= SEARCH_MAX_FIRST or not 0 <= offset <= SEARCH_MAX_OFFSET:
            raise graphql_error(
                "validation_error", f"`first` must be 1 to {SEARCH_MAX_FIRST}, `offset` 0 to {SEARCH_MAX_OFFSET}."
            )
        MESSAGE_SEARCHES.hit(user.pk)
        filters = SearchFilters(
            room_id=room_id, sender_id=sender_id, after=after, before=before, has_attachment=bool(has_attachment)
        )
        found = search_messages(user=user, q=q, filters=filters)
        return {"count": found.count(), "results": services.search_results(found[offset : offset + first], user)}


class Query(SearchQuery):
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
            batch.prime("mentions", {m.room_id: m.mentions for m in memberships})
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


# --- mutations ---------------------------------------------------------------------------------------------
class MessagePayload(graphene.ObjectType):
    """The answer of every message mutation. A refusal is data: `ok` false and `error` a code."""

    ok = graphene.Boolean(required=True)
    message = graphene.Field(Message, description="The message after the change; null on a refusal.")
    error = graphene.String(
        description="forbidden, not_found, not_member, message_deleted, too_many_reactions, invalid_reply, "
        "body_empty, body_too_long, rate_limited, not_authenticated, ... or null."
    )


def _message_mutation(info: graphene.ResolveInfo, change: Any, **kwargs: Any) -> MessagePayload:
    """Authenticate, count against the shared write limit, call the service; refusals become data."""
    user = current_user(info)
    if user is None:
        return MessagePayload(ok=False, message=None, error="not_authenticated")
    try:
        MESSAGE_SENDS.hit(user.pk)
        message = change(user, **kwargs)
    except DomainError as exc:
        return MessagePayload(ok=False, message=None, error=exc.code)
    RoomBatch.of(info).forget(kwargs["room_id"])
    return MessagePayload(ok=True, message=services.with_my_reactions([message], user)[0], error=None)


def _send(
    user: Any,
    *,
    room_id: int,
    body: str | None,
    client_id: str | None,
    reply_to: int | None,
    attachments: list[int] | None,
) -> dict[str, Any]:
    client_id = client_id or f"gql-{uuid.uuid4()}"
    return services.send_message(
        room_id=room_id, sender=user, client_id=client_id, body=body, reply_to=reply_to, attachments=attachments
    ).message


def _edit(user: Any, *, room_id: int, message_id: int, body: str) -> dict[str, Any]:
    return services.edit_message(room_id=room_id, message_id=message_id, actor=user, body=body)


def _delete(user: Any, *, room_id: int, message_id: int) -> dict[str, Any]:
    return services.delete_message(room_id=room_id, message_id=message_id, actor=user)


def _react(on: bool) -> Any:
    def react(user: Any, *, room_id: int, message_id: int, emoji: str) -> dict[str, Any]:
        return services.set_reaction(room_id=room_id, message_id=message_id, actor=user, emoji=emoji, on=on)

    return react


class SendMessage(graphene.Mutation):
    """Send a TALK message (the same path as the socket's `send` and REST); a repeated clientId returns the
    stored message and stores nothing new."""

    class Arguments:
        room_id = graphene.Int(required=True)
        body = graphene.String(
            description="The text (1-4000 characters after trimming); may be empty or absent when attachments are sent."
        )
        client_id = graphene.String(description="Idempotency key (1-64 of letters, digits, - _ . :); one is made if absent.")
        reply_to = graphene.Int(description="The id of a message of the same room this one answers.")
        attachments = graphene.List(
            graphene.NonNull(graphene.Int),
            description="Ids of files the caller uploaded to this room (POST /api/rooms/{id}/attachments) and has not sent yet.",
        )

    Output = MessagePayload

    @staticmethod
    def mutate(
        root: Any, info: graphene.ResolveInfo, room_id: int, body: str | None = None, client_id: str | None = None,
        reply_to: int | None = None, attachments: list[int] | None = None,
    ) -> MessagePayload:
        return _message_mutation(
            info, _send, room_id=room_id, body=body, client_id=client_id, reply_to=reply_to, attachments=attachments
        )


class EditMessage(graphene.Mutation):
    """Its sender replaces the body of a TALK message."""

    class Arguments:
        room_id = graphene.Int(required=True)
        message_id = graphene.Int(required=True)
        body = graphene.String(required=True)

    Output = MessagePayload

    @staticmethod
    def mutate(root: Any, info: graphene.ResolveInfo, room_id: int, message_id: int, body: str) -> MessagePayload:
        return _message_mutation(info, _edit, room_id=room_id, message_id=message_id, body=body)


class DeleteMessage(graphene.Mutation):
    """Its sender, the room's owner or staff turn a message into a tombstone."""

    class Arguments:
        room_id = graphene.Int(required=True)
        message_id = graphene.Int(required=True)

    Output = MessagePayload

    @staticmethod
    def mutate(root: Any, info: graphene.ResolveInfo, room_id: int, message_id: int) -> MessagePayload:
        return _message_mutation(info, _delete, room_id=room_id, message_id=message_id)


class ReactionArguments:
    room_id = graphene.Int(required=True)
    message_id = graphene.Int(required=True)
    emoji = graphene.String(required=True, description="A short name or one emoji.")


class AddReaction(graphene.Mutation):
    Arguments = ReactionArguments
    Output = MessagePayload

    @staticmethod
    def mutate(root: Any, info: graphene.ResolveInfo, room_id: int, message_id: int, emoji: str) -> MessagePayload:
        return _message_mutation(info, _react(True), room_id=room_id, message_id=message_id, emoji=emoji)


class RemoveReaction(graphene.Mutation):
    Arguments = ReactionArguments
    Output = MessagePayload

    @staticmethod
    def mutate(root: Any, info: graphene.ResolveInfo, room_id: int, message_id: int, emoji: str) -> MessagePayload:
        return _message_mutation(info, _react(False), room_id=room_id, message_id=message_id, emoji=emoji)


class Mutation:
    send_message = SendMessage.Field()
    edit_message = EditMessage.Field()
    delete_message = DeleteMessage.Field()
    add_reaction = AddReaction.Field()
    remove_reaction = RemoveReaction.Field()
