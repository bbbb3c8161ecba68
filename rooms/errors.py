"""The refusals of the rooms domain (re-exported by rooms.services, where callers import them from)."""

from __future__ import annotations

from core.domain import DomainError, Forbidden, NotFound


class RoomNotFound(NotFound):
    """Also the answer to a non-member asking about a private room or a DM: its existence is not revealed."""

    default_detail = "No such room."


class RoomFull(DomainError):
    code = "room_full"
    http_status = 409
    default_detail = "The room is full."


class NotRoomMember(Forbidden):
    code = "not_member"
    default_detail = "You are not a member of this room."


class NotRoomOwner(Forbidden):
    code = "forbidden"
    default_detail = "Only the room's owner or staff may do this."


class MaxPersonnelBelowPersonnel(DomainError):
    code = "max_personnel_below_personnel"
    http_status = 400
    default_detail = "max_personnel cannot be lower than the current personnel."


class MayNotModerate(Forbidden):
    code = "forbidden"
    default_detail = "Only the room's owner or a moderator may do this, and not to the owner or a moderator."


class Banned(Forbidden):
    code = "banned"
    default_detail = "You are banned from this room."


class Blocked(Forbidden):
    code = "blocked"
    default_detail = "This conversation is blocked."


class InviteInvalid(NotFound):
    code = "invite_invalid"
    default_detail = "No such invitation."


class InviteExpired(DomainError):
    code = "invite_expired"
    http_status = 410
    default_detail = "The invitation has expired."


class InviteUsedUp(DomainError):
    code = "invite_used_up"
    http_status = 410
    default_detail = "The invitation has been used as many times as it allows."


class InviteNotForYou(Forbidden):
    code = "invite_not_for_you"
    default_detail = "The invitation is for another user."


class UserNotFound(NotFound):
    default_detail = "No such user."


class MemberNotFound(NotFound):
    default_detail = "That user is not a member of this room."
