"""GraphQL of rooms: the Room type's own fields, `room`, `rooms` (a Relay-style connection), `roomInvites`,
and the mutations of membership (join, leave, invitations), moderation (roles, ownership, kick, ban, unban),
direct messages and blocks, all over rooms.services. Mutations answer refusals as data (`ok` false and
`error` a code), the same codes REST answers, after the same rate limits.

The Room type is assembled by chattalk_project.schema from every app's `RoomFields` (messaging adds
`unread`, presence adds `participants`), so each field lives with the app that owns its data and rooms never
imports its listeners; fields here refer to the assembled type lazily by its import path.

Per-room values a listing needs (membership, unread, participants) are loaded once per request for every
room the response shows (`RoomBatch`), which keeps a page of N rooms at a constant number of queries.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from typing import Any

import graphene
from django.utils.dateparse import parse_datetime

from accounts.schema import PublicUser
from core.domain import DomainError
from core.graphql_errors import current_user, domain_errors_as_graphql, graphql_error, require_user
from core.graphql_limits import ListBound

from . import services
from .limits import DM_OPENS, INVITE_ACCEPTS, INVITE_CREATIONS, ROOM_WRITES
from .models import Room as RoomModel

ROOM_TYPE = "chattalk_project.schema.Room"
ROOMS_PAGE_DEFAULT = 20
ROOMS_PAGE_MAX = 100
# For the cost limit: a page of `rooms` is charged at `first` (its edges are that page, not a further list).
LIST_BOUNDS = {
    "Query.rooms": ListBound("first", ROOMS_PAGE_DEFAULT, ROOMS_PAGE_MAX),
    "RoomConnection.edges": ListBound(None, 1, 1),
    "Query.roomInvites": ListBound(None, services.INVITES_LISTED_MAX, services.INVITES_LISTED_MAX),
}


# --- per-request batching -------------------------------------------------------------------------------------
class RoomBatch:
    """The rooms one response shows, and per-room values loaded once for all of them.

    A list resolver registers its rooms (`show_rooms`); the first room whose field needs a value loads it
    for every registered room in one call. GraphQL resolves fields depth-first, so this is the sync form of
    a dataloader: it batches by what the list already knows instead of waiting for a tick.
    """

    def __init__(self) -> None:
        self.room_ids: list[int] = []
        self.values: dict[str, dict[int, Any]] = {}

    @classmethod
    def of(cls, info: graphene.ResolveInfo) -> RoomBatch:
        batch = getattr(info.context, "_chattalk_room_batch", None)
        if batch is None:
            batch = cls()
            info.context._chattalk_room_batch = batch
        return batch

    def show(self, room_ids: Iterable[int]) -> None:
        for room_id in room_ids:
            if room_id not in self.room_ids:
                self.room_ids.append(room_id)

    def forget(self, room_id: int) -> None:
        """After a mutation changed the room: later fields of the same request must read it afresh."""
        for values in self.values.values():
            values.pop(room_id, None)

    def prime(self, name: str, values: dict[int, Any]) -> None:
        self.values.setdefault(name, {}).update(values)

    def load(self, name: str, room_id: int, load_many: Callable[[list[int]], dict[int, Any]]) -> Any:
        loaded = self.values.setdefault(name, {})
        if room_id not in loaded:
            wanted = [r for r in self.room_ids if r not in loaded]
            if room_id not in wanted:
                wanted.append(room_id)
            found = load_many(wanted)
            for r in wanted:
                loaded[r] = found.get(r)
        return loaded[room_id]


def show_rooms(info: graphene.ResolveInfo, rooms: list[RoomModel]) -> list[RoomModel]:
    RoomBatch.of(info).show(room.pk for room in rooms)
    return rooms


def caller_is_member(info: graphene.ResolveInfo, room_id: int) -> bool:
    """Is the caller an active member of this room? One query for every room of the response."""
    user = current_user(info)
    if user is None:
        return False

    def load_many(room_ids: list[int]) -> dict[int, bool]:
        members = services.active_room_ids(user, room_ids)
        return {r: r in members for r in room_ids}

    return bool(RoomBatch.of(info).load("is_member", room_id, load_many))


def require_room_member(info: graphene.ResolveInfo, room_id: int) -> None:
    """The gate of members-only room fields (REST answers 403 `not_member` there)."""
    require_user(info)
    if not caller_is_member(info, room_id):
        raise graphql_error("not_member", services.NotRoomMember.default_detail)


# --- types ----------------------------------------------------------------------------------------------------
class RoomFields:
    """The Room type's own fields (a mixin: chattalk_project.schema assembles the type)."""

    id = graphene.Int(required=True)
    title = graphene.String(required=True)
    owner = graphene.Field(PublicUser, description="Null once the owner's account is deleted.")
    max_personnel = graphene.Int(required=True)
    personnel = graphene.Int(required=True)
    created_at = graphene.DateTime(required=True)
    last_seq = graphene.Int(required=True, description="The seq of the room's newest message.")
    is_member = graphene.Boolean(required=True, description="Whether the caller is a member of this room.")
    kind = graphene.String(required=True, description='"room" or "dm".')
    visibility = graphene.String(required=True, description='"public" or "private".')
    history_visibility = graphene.String(required=True, description='"all" or "since_join".')
    my_role = graphene.String(description='The caller\'s role: "owner", "moderator", "member", or null.')

    @staticmethod
    def resolve_id(room: RoomModel, info: graphene.ResolveInfo) -> int:
        return room.pk

    @staticmethod
    def resolve_my_role(room: RoomModel, info: graphene.ResolveInfo) -> str | None:
        user = current_user(info)
        if user is None:
            return None
        return RoomBatch.of(info).load("role", room.pk, lambda room_ids: services.roles_in(user, room_ids))

    @staticmethod
    def resolve_is_member(room: RoomModel, info: graphene.ResolveInfo) -> bool:
        return caller_is_member(info, room.pk)


class RoomEdge(graphene.ObjectType):
    node = graphene.Field(ROOM_TYPE, required=True)
    cursor = graphene.String(required=True)


class RoomConnection(graphene.ObjectType):
    """A Relay-style page of rooms, newest first; `after` takes the previous page's `endCursor`."""

    edges = graphene.List(graphene.NonNull(RoomEdge), required=True)
    page_info = graphene.Field(graphene.relay.PageInfo, required=True)


def room_cursor(room_id: int) -> str:
    return base64.urlsafe_b64encode(f"room:{room_id}".encode()).decode()


def room_id_from_cursor(cursor: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind == "room" and value.isdigit():
            return int(value)
    except (binascii.Error, UnicodeError, ValueError):
        pass
    raise graphql_error("invalid_cursor", "`after` is not a cursor of this connection.")


class Invite(graphene.ObjectType):
    """An invitation. `token` is shown once, in createInvite's answer (only its hash is stored): null in lists."""

    id = graphene.Int(required=True)
    token = graphene.String()
    user = graphene.Field(PublicUser, description="The invited user; null for a link anyone may use.")
    created_by = graphene.Field(PublicUser)
    max_uses = graphene.Int(description="Null: unlimited.")
    uses = graphene.Int(required=True)
    expires_at = graphene.DateTime()
    created_at = graphene.DateTime(required=True)


class Query:
    room = graphene.Field(ROOM_TYPE, id=graphene.Int(required=True))
    room_invites = graphene.List(
        graphene.NonNull(Invite),
        required=True,
        room_id=graphene.Int(required=True),
        description="The room's usable invitations, newest first (owner, moderators, staff).",
    )
    rooms = graphene.Field(
        RoomConnection,
        required=True,
        search=graphene.String(),
        first=graphene.Int(description=f"1 to {ROOMS_PAGE_MAX}; {ROOMS_PAGE_DEFAULT} by default."),
        after=graphene.String(),
    )

    @staticmethod
    @domain_errors_as_graphql
    def resolve_room(root: Any, info: graphene.ResolveInfo, id: int) -> RoomModel:  # noqa: A002
        user = require_user(info)
        room = services.get_visible_room(id, user)  # a private room or DM is not_found to a non-member
        show_rooms(info, [room])
        return room

    @staticmethod
    @domain_errors_as_graphql
    def resolve_room_invites(root: Any, info: graphene.ResolveInfo, room_id: int) -> list[dict[str, Any]]:
        return [_invite_fields(i) for i in services.room_invites(room_id=room_id, actor=require_user(info))]

    @staticmethod
    def resolve_rooms(
        root: Any,
        info: graphene.ResolveInfo,
        search: str | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> dict[str, Any]:
        require_user(info)
        first = ROOMS_PAGE_DEFAULT if first is None else first
        if not 1 <= first <= ROOMS_PAGE_MAX:
            raise graphql_error("validation_error", f"`first` must be 1 to {ROOMS_PAGE_MAX}.")
        rooms = services.search_rooms(search or "")
        if after:
            rooms = rooms.filter(pk__lt=room_id_from_cursor(after))
        page = list(rooms[: first + 1])
        has_next = len(page) > first
        page = show_rooms(info, page[:first])
        edges = [{"node": room, "cursor": room_cursor(room.pk)} for room in page]
        return {
            "edges": edges,
            "page_info": graphene.relay.PageInfo(
                has_next_page=has_next,
                has_previous_page=bool(after),
                start_cursor=edges[0]["cursor"] if edges else None,
                end_cursor=edges[-1]["cursor"] if edges else None,
            ),
        }


class MembershipPayload(graphene.ObjectType):
    """The answer of joinRoom and leaveRoom. A refusal is data: `ok` false and `error` a code."""

    ok = graphene.Boolean(required=True)
    room = graphene.Field(ROOM_TYPE)
    error = graphene.String(description="room_full, not_found, not_authenticated, rate_limited, ... or null.")


def _membership_mutation(info: graphene.ResolveInfo, room_id: int, change: Callable[..., Any]) -> MembershipPayload:
    user = current_user(info)
    if user is None:
        return MembershipPayload(ok=False, room=None, error="not_authenticated")
    try:
        ROOM_WRITES.hit(user.pk)
        result = change(room_id=room_id, user=user)
    except services.RoomFull as exc:
        room = RoomModel.objects.select_related("owner").filter(pk=room_id).first()
        return MembershipPayload(ok=False, room=room, error=exc.code)
    except DomainError as exc:
        return MembershipPayload(ok=False, room=None, error=exc.code)
    RoomBatch.of(info).forget(room_id)
    return MembershipPayload(ok=True, room=result.room, error=None)


class ModerationPayload(graphene.ObjectType):
    """The answer of kickMember, banMember and setMemberRole. A refusal is data: `ok` false, `error` a code."""

    ok = graphene.Boolean(required=True)
    room = graphene.Field(ROOM_TYPE)
    user = graphene.Field(PublicUser)
    role = graphene.String(description="The user's role after the action; null when not a member.")
    error = graphene.String(description="forbidden, not_found, banned, rate_limited, ... or null.")


def _refusals_as_data(info: graphene.ResolveInfo, payload: type, limit: Any, run: Callable[[Any], Any]) -> Any:
    """Run a mutation for the caller after its rate limit; a refusal becomes `payload(ok=False, error=code)`."""
    user = current_user(info)
    if user is None:
        return payload(ok=False, error="not_authenticated")
    try:
        limit.hit(user.pk)
        return run(user)
    except DomainError as exc:
        return payload(ok=False, error=exc.code)


def _moderation_mutation(info: graphene.ResolveInfo, room_id: int, action: Callable[..., Any], **args: Any) -> Any:
    def run(user: Any) -> ModerationPayload:
        result = action(room_id=room_id, actor=user, **args)
        RoomBatch.of(info).forget(room_id)
        return ModerationPayload(ok=True, room=result.room, user=result.user, role=result.role, error=None)

    return _refusals_as_data(info, ModerationPayload, ROOM_WRITES, run)


def _member_mutation(
    name: str, action: Callable[..., Any], description: str | None = None, **more: graphene.Argument
) -> type[graphene.Mutation]:
    """A moderation mutation on one member of a room: `roomId`, `userId` and `more` arguments, the
    service `action` run for the caller, ModerationPayload as the answer (refusals as data)."""

    class Arguments:
        room_id = graphene.Int(required=True)
        user_id = graphene.Int(required=True)

    for argument_name, argument in more.items():
        setattr(Arguments, argument_name, argument)

    def mutate(root: Any, info: graphene.ResolveInfo, room_id: int, user_id: int, **args: Any) -> ModerationPayload:
        return _moderation_mutation(info, room_id, action, user_id=user_id, **args)

    attributes = {"Arguments": Arguments, "Output": ModerationPayload, "mutate": staticmethod(mutate)}
    return type(name, (graphene.Mutation,), {**attributes, "__doc__": description})


KickMember = _member_mutation("KickMember", services.kick_member)
BanMember = _member_mutation("BanMember", services.ban_member)
SetMemberRole = _member_mutation(
    "SetMemberRole", services.set_role, role=graphene.String(required=True, description='"moderator" or "member".')
)
UnbanMember = _member_mutation(
    "UnbanMember",
    services.unban_member,
    "Lift a ban (owner, moderators, staff); lifting no ban is ok and changes nothing. `role` is null.",
)
TransferOwnership = _member_mutation(
    "TransferOwnership", services.transfer_ownership, "The owner hands the room to another member (and stays as a moderator)."
)


class JoinRoom(graphene.Mutation):
    class Arguments:
        room_id = graphene.Int(required=True)

    Output = MembershipPayload

    @staticmethod
    def mutate(root: Any, info: graphene.ResolveInfo, room_id: int) -> MembershipPayload:
        return _membership_mutation(info, room_id, services.join_room)


class LeaveRoom(graphene.Mutation):
    class Arguments:
        room_id = graphene.Int(required=True)

    Output = MembershipPayload

    @staticmethod
    def mutate(root: Any, info: graphene.ResolveInfo, room_id: int) -> MembershipPayload:
        return _membership_mutation(info, room_id, services.leave_room)


# --- invitations ---------------------------------------------------------------------------------------------
def _invite_fields(summary: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    """A service's invitation summary as the Invite type reads it (times parsed back from ISO text)."""
    return {
        **summary,
        "token": token,
        "expires_at": parse_datetime(summary["expires_at"]) if summary["expires_at"] else None,
        "created_at": parse_datetime(summary["created_at"]),
    }


class InvitePayload(graphene.ObjectType):
    """The answer of createInvite: the invitation with its token (shown only here), or `error` a code."""

    ok = graphene.Boolean(required=True)
    invite = graphene.Field(Invite)
    room = graphene.Field(ROOM_TYPE)
    error = graphene.String(description="forbidden, not_found, validation_error, rate_limited, ... or null.")


class CreateInvite(graphene.Mutation):
    """Invite a user (`userId` or `username`: for them only, one use by default) or make a link anyone holding it may use
    (owner, moderators, staff). `expiresInSeconds` 60 to 30 days (7 days by default)."""

    class Arguments:
        room_id = graphene.Int(required=True)
        user_id = graphene.Int()
        username = graphene.String(description="Instead of userId: the invited user's username.")
        max_uses = graphene.Int()
        expires_in_seconds = graphene.Int()

    Output = InvitePayload

    @staticmethod
    def mutate(
        root: Any,
        info: graphene.ResolveInfo,
        room_id: int,
        user_id: int | None = None,
        username: str | None = None,
        max_uses: int | None = None,
        expires_in_seconds: int | None = None,
    ) -> InvitePayload:
        def run(user: Any) -> InvitePayload:
            new = services.create_invite(
                room_id=room_id,
                actor=user,
                user_id=user_id,
                username=username,
                max_uses=max_uses,
                expires_in_seconds=expires_in_seconds,
            )
            invite = _invite_fields(services.invite_summary(new.invite), token=new.token)
            return InvitePayload(ok=True, invite=invite, room=new.invite.room, error=None)

        return _refusals_as_data(info, InvitePayload, INVITE_CREATIONS, run)


class OkPayload(graphene.ObjectType):
    """The answer of a mutation with nothing to show: `ok`, or `error` a code."""

    ok = graphene.Boolean(required=True)
    error = graphene.String()


class RevokeInvite(graphene.Mutation):
    """Revoke an invitation by its `token` or by the `inviteId` roomInvites lists (exactly one of them)."""

    class Arguments:
        room_id = graphene.Int(required=True)
        token = graphene.String()
        invite_id = graphene.Int()

    Output = OkPayload

    @staticmethod
    def mutate(
        root: Any, info: graphene.ResolveInfo, room_id: int, token: str | None = None, invite_id: int | None = None
    ) -> OkPayload:
        def run(user: Any) -> OkPayload:
            if (token is None) == (invite_id is None):
                return OkPayload(ok=False, error="validation_error")
            if token is not None:
                services.revoke_invite(room_id=room_id, token=token, actor=user)
            else:
                services.revoke_invite_by_id(room_id=room_id, invite_id=invite_id, actor=user)
            return OkPayload(ok=True, error=None)

        return _refusals_as_data(info, OkPayload, ROOM_WRITES, run)


class AcceptInvite(graphene.Mutation):
    """Join the invitation's room: invite_invalid, invite_not_for_you, invite_expired, invite_used_up, banned,
    room_full (then `room` is null: a refused invitation reveals no room)."""

    class Arguments:
        token = graphene.String(required=True)

    Output = MembershipPayload

    @staticmethod
    def mutate(root: Any, info: graphene.ResolveInfo, token: str) -> MembershipPayload:
        def run(user: Any) -> MembershipPayload:
            change = services.accept_invite(token=token, user=user)
            RoomBatch.of(info).forget(change.room.pk)
            return MembershipPayload(ok=True, room=change.room, error=None)

        return _refusals_as_data(info, MembershipPayload, INVITE_ACCEPTS, run)


# --- direct messages and blocks ------------------------------------------------------------------------------
class DmPayload(graphene.ObjectType):
    ok = graphene.Boolean(required=True)
    room = graphene.Field(ROOM_TYPE)
    created = graphene.Boolean(description="True when the DM was made by this call; false when it existed.")
    error = graphene.String(description="blocked, not_found, validation_error, rate_limited, ... or null.")


class OpenDm(graphene.Mutation):
    """The caller's one DM with `userId`: made now, or the existing one (also under concurrent opens)."""

    class Arguments:
        user_id = graphene.Int(required=True)

    Output = DmPayload

    @staticmethod
    def mutate(root: Any, info: graphene.ResolveInfo, user_id: int) -> DmPayload:
        def run(user: Any) -> DmPayload:
            result = services.open_dm(user=user, user_id=user_id)
            RoomBatch.of(info).forget(result.room.pk)
            return DmPayload(ok=True, room=result.room, created=result.created, error=None)

        return _refusals_as_data(info, DmPayload, DM_OPENS, run)


class BlockUser(graphene.Mutation):
    """No new DM with that user and no sends into your DM, either way, until unblocked. Idempotent."""

    class Arguments:
        user_id = graphene.Int(required=True)

    Output = OkPayload

    @staticmethod
    def mutate(root: Any, info: graphene.ResolveInfo, user_id: int) -> OkPayload:
        def run(user: Any) -> OkPayload:
            services.block_user(user=user, user_id=user_id)
            return OkPayload(ok=True, error=None)

        return _refusals_as_data(info, OkPayload, ROOM_WRITES, run)


class UnblockUser(graphene.Mutation):
    class Arguments:
        user_id = graphene.Int(required=True)

    Output = OkPayload

    @staticmethod
    def mutate(root: Any, info: graphene.ResolveInfo, user_id: int) -> OkPayload:
        def run(user: Any) -> OkPayload:
            services.unblock_user(user=user, user_id=user_id)
            return OkPayload(ok=True, error=None)

        return _refusals_as_data(info, OkPayload, ROOM_WRITES, run)


class Mutation:
    join_room = JoinRoom.Field()
    leave_room = LeaveRoom.Field()
    kick_member = KickMember.Field()
    ban_member = BanMember.Field()
    unban_member = UnbanMember.Field()
    set_member_role = SetMemberRole.Field()
    transfer_ownership = TransferOwnership.Field()
    create_invite = CreateInvite.Field()
    revoke_invite = RevokeInvite.Field()
    accept_invite = AcceptInvite.Field()
    open_dm = OpenDm.Field()
    block_user = BlockUser.Field()
    unblock_user = UnblockUser.Field()
