"""The rooms domain: the only code that changes rooms, personnel or membership.

The member limit is exact because a seat is taken by one conditional UPDATE
(`personnel = personnel + 1 WHERE personnel < max_personnel`) in the same transaction as the membership
row: no lock held across a read, no read-modify-write, the database decides. On PostgreSQL the row lock of
that UPDATE queues concurrent joiners; on SQLite the IMMEDIATE transaction does.

Lock order everywhere: the room row, then membership rows. Join and leave start with their conditional
UPDATE of the room, delete locks the room before its cascade, and messaging's send takes its seq from the
room row: no transaction holds a membership row while it waits for a room, so none can deadlock. An
invitation's use is counted after its seat is taken (room row, then invite row), for the same reason.

Visibility: a private room or a DM is, to anyone who is not an active member, a room that does not exist
(RoomNotFound on every path). Roles live on the membership: the owner (also `Room.owner`), moderators and
members. Moderation (kick, ban, unban, role changes) takes the room row lock first, like join and leave, and
writes a RoomEvent with the room's next seq, so sockets, resume and Kafka see it in order with messages.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import CharField, Exists, F, OuterRef, Q, QuerySet, Subquery, Value
from django.utils import timezone

from accounts.models import User
from core.compiled import CompiledQuery
from core.domain import InvalidInput
from events.services import record_event
from realtime.publish import publish_member_removed, publish_room_deleted, publish_room_event

from . import signals
from .errors import (
    Banned,
    Blocked,
    InviteExpired,
    InviteInvalid,
    InviteNotForYou,
    InviteUsedUp,
    MaxPersonnelBelowPersonnel,
    MayNotModerate,
    MemberNotFound,
    NotRoomMember,
    NotRoomOwner,
    RoomFull,
    RoomNotFound,
    UserNotFound,
)
from .models import (
    DM_MAX_PERSONNEL,
    MAX_ID,
    MAX_MAX_PERSONNEL,
    MIN_MAX_PERSONNEL,
    TITLE_MAX_LENGTH,
    Ban,
    Block,
    HistoryVisibility,
    Invite,
    Membership,
    Role,
    Room,
    RoomEvent,
    RoomKind,
    Visibility,
    is_room_id,
)
from .sequence import take_seq

__all__ = [  # the refusals callers import from here
    "Banned", "Blocked", "InviteExpired", "InviteInvalid", "InviteNotForYou", "InviteUsedUp",
    "MaxPersonnelBelowPersonnel", "MayNotModerate", "MemberNotFound", "NotRoomMember", "NotRoomOwner",
    "RoomFull", "RoomNotFound", "UserNotFound",
]


@dataclass(frozen=True)
class MembershipChange:
    room: Room
    membership: Membership
    changed: bool  # False when the call was a no-op (joining twice, leaving twice)


def clean_title(title: Any) -> str:
    if not isinstance(title, str):
        raise InvalidInput(fields={"title": ["Must be a string."]})
    title = title.strip()
    if not 1 <= len(title) <= TITLE_MAX_LENGTH:
        raise InvalidInput(fields={"title": [f"Must be 1 to {TITLE_MAX_LENGTH} characters."]})
    if "\x00" in title:  # PostgreSQL text cannot hold NUL: refuse it here rather than fail in the INSERT
        raise InvalidInput(fields={"title": ["Null characters are not allowed."]})
    return title


def clean_max_personnel(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        # ASCII digits only: str.isdigit() also accepts "³", which int() refuses (a 500 the fuzzer found).
        text = value.strip() if isinstance(value, str) else ""
        if not (text.isascii() and text.isdigit()):
            raise InvalidInput(fields={"max_personnel": ["Must be a whole number."]})
        value = int(text)
    if not MIN_MAX_PERSONNEL <= value <= MAX_MAX_PERSONNEL:
        raise InvalidInput(fields={"max_personnel": [f"Must be between {MIN_MAX_PERSONNEL} and {MAX_MAX_PERSONNEL}."]})
    return value


def room_event_data(room: Room) -> dict[str, Any]:
    return {
        "id": room.pk,
        "title": room.title,
        "owner_id": room.owner_id,
        "max_personnel": room.max_personnel,
        "personnel": room.personnel,
        "last_seq": room.last_seq,
        "kind": room.kind,
        "visibility": room.visibility,
        "history_visibility": room.history_visibility,
    }


def _checked_room_id(room_id: Any) -> int:
    """The id itself, or RoomNotFound for one no room can have: never an overflow error."""
    if not is_room_id(room_id):
        raise RoomNotFound()
    return room_id


def get_room(room_id: int) -> Room:
    """The room whatever its visibility: for code that checks access itself (owner actions, staff)."""
    try:
        return Room.objects.select_related("owner").get(pk=_checked_room_id(room_id))
    except Room.DoesNotExist:
        raise RoomNotFound() from None


def is_listed(room: Room) -> bool:
    """Public rooms are listed, searchable and open to join; private rooms and DMs are none of these."""
    return room.kind == RoomKind.ROOM and room.visibility == Visibility.PUBLIC


def my_role_of(user: User) -> Subquery | Value:
    """An annotation: the user's role in each room of a queryset (None where not a member)."""
    if not user.is_authenticated:
        return Value(None, output_field=CharField())
    return Subquery(Membership.objects.active().filter(room_id=OuterRef("pk"), user_id=user.pk).values("role")[:1])


def rooms_for(user: User) -> QuerySet[Room]:
    """Rooms with the caller's `my_role` (None where not a member) annotated, owner loaded."""
    return Room.objects.select_related("owner").annotate(my_role=my_role_of(user))


def get_visible_room(room_id: int, user: User) -> Room:
    """The room as `user` may see it, with `my_role`: a private room or DM is RoomNotFound to a non-member."""
    room = rooms_for(user).filter(pk=_checked_room_id(room_id)).first()
    if room is None or (getattr(room, "my_role", None) is None and not is_listed(room)):
        raise RoomNotFound()
    return room


def active_membership(room_id: int, user: User) -> Membership | None:
    if not user.is_authenticated or not is_room_id(room_id):
        return None
    return Membership.objects.active().select_related("room").filter(room_id=room_id, user_id=user.pk).first()


def require_member(room_id: int, user: User) -> Membership:
    """The membership of a member (its `room` loaded), or RoomNotFound / NotRoomMember: the gate of every
    members-only read. A non-member of a private room or DM gets RoomNotFound: its existence is not revealed."""
    membership = active_membership(_checked_room_id(room_id), user)
    if membership is not None:
        return membership
    room = Room.objects.filter(pk=room_id).only("kind", "visibility").first()
    if room is None or not is_listed(room):
        raise RoomNotFound()
    raise NotRoomMember()


def search_rooms(search: str = "") -> QuerySet[Room]:
    """Public rooms whose title contains `search` (any case), newest first: the one room search of REST,
    GraphQL and the pages. A search longer than any title is cut to that length (it could match nothing more)."""
    rooms = Room.objects.select_related("owner").filter(kind=RoomKind.ROOM, visibility=Visibility.PUBLIC)
    rooms = rooms.order_by("-id")
    # PostgreSQL cannot compare text with a NUL in it.
    search = (search or "").replace("\x00", "").strip()[:TITLE_MAX_LENGTH]
    if search:
        rooms = rooms.filter(title__icontains=search)
    return rooms


def active_room_ids(user: User, room_ids: list[int]) -> set[int]:
    """Which of these rooms the user is a member of, in one query (for per-room gates on list pages)."""
    if not user.is_authenticated or not room_ids:
        return set()
    return set(
        Membership.objects.active().filter(user_id=user.pk, room_id__in=room_ids).values_list(
            "room_id", flat=True
        )
    )


def roles_in(user: User, room_ids: list[int]) -> dict[int, str]:
    """The user's role in each of these rooms they are a member of, in one query."""
    if not user.is_authenticated or not room_ids:
        return {}
    return dict(
        Membership.objects.active().filter(user_id=user.pk, room_id__in=room_ids).values_list("room_id", "role")
    )


def clean_visibility(value: Any) -> str:
    if value not in Visibility.values:
        raise InvalidInput(fields={"visibility": [f"Must be one of {', '.join(Visibility.values)}."]})
    return value


def clean_history_visibility(value: Any) -> str:
    if value not in HistoryVisibility.values:
        raise InvalidInput(fields={"history_visibility": [f"Must be one of {', '.join(HistoryVisibility.values)}."]})
    return value


def create_room(
    *, owner: User, title: Any, max_personnel: Any, visibility: Any = None, history_visibility: Any = None
) -> Room:
    """Create a room; its creator becomes its first member, with the owner role. History defaults to "all"
    for a public room and "since_join" for a private one."""
    title = clean_title(title)
    max_personnel = clean_max_personnel(max_personnel)
    visibility = Visibility.PUBLIC if visibility is None else clean_visibility(visibility)
    if history_visibility is None:
        history_visibility = HistoryVisibility.ALL if visibility == Visibility.PUBLIC else HistoryVisibility.SINCE_JOIN
    else:
        history_visibility = clean_history_visibility(history_visibility)
    now = timezone.now()
    with transaction.atomic():
        # The creator's seat is taken with the room itself: nobody else can see the room before this commits,
        # so there is no seat to race for, no ban and no earlier membership, and none of join's checks apply.
        room = Room.objects.create(
            title=title,
            owner=owner,
            max_personnel=max_personnel,
            personnel=1,
            visibility=visibility,
            history_visibility=history_visibility,
        )
        # The event describes the room as created, before its first seat, as it always has.
        record_event("room.created", room_id=room.pk, data={**room_event_data(room), "personnel": 0})
        membership = Membership.objects.create(
            room=room, user=owner, is_active=True, role=Role.OWNER, joined_at=now, visible_after_seq=0
        )
        _joined(room, owner, membership, now)
    return room


class _NoChange(Exception):
    """Raised inside a membership change's savepoint to undo its seat update when the flip found nothing."""


def join_room(*, room_id: int, user: User) -> MembershipChange:
    """Take a seat in a public room. Idempotent: a member joining again changes nothing. RoomFull when no
    seat is left, Banned for a banned user, RoomNotFound for a private room or DM (they need an invitation)."""
    room_id = _checked_room_id(room_id)
    return _join_checked(room_id, user, invited=False)


def _join_checked(room_id: int, user: User, *, invited: bool, claim: Callable[[], None] | None = None) -> MembershipChange:
    try:
        with transaction.atomic():
            return _join(room_id, user, invited=invited, claim=claim)
    except IntegrityError:
        # The room was deleted under the membership insert (the foreign key refused it; SQLite reports that at
        # commit): the same answer as an unknown room.
        if not Room.objects.filter(pk=room_id).exists():
            raise RoomNotFound() from None
        raise


def _unchanged(room_id: int, user: User) -> MembershipChange:
    membership = Membership.objects.filter(room_id=room_id, user=user).first()
    if membership is None:
        membership = Membership(room_id=room_id, user=user, is_active=False)
    room = get_room(room_id)
    room.my_role = membership.role if membership.is_active else None  # type: ignore[attr-defined]
    return MembershipChange(room=room, membership=membership, changed=False)


def _join(
    room_id: int, user: User, *, invited: bool, claim: Callable[[], None] | None = None
) -> MembershipChange:
    """Take a seat. `invited`: a private room or DM may be joined (an invitation, a DM, the creator).
    `claim` runs once the seat is taken, under the room row's lock (an invitation counts its use there)."""
    if active_membership(room_id, user) is not None:
        return _unchanged(room_id, user)  # the common repeat join takes no lock at all
    now = timezone.now()
    seats = Room.objects.filter(pk=room_id)
    if not invited:
        seats = seats.filter(kind=RoomKind.ROOM, visibility=Visibility.PUBLIC)
    try:
        with transaction.atomic():
            # The seat first: this UPDATE takes the room row lock, so every writer of a room (join, leave,
            # send, delete, moderation) queues on that one row before touching any other row: no lock cycle.
            took_seat = seats.filter(personnel__lt=F("max_personnel")).update(personnel=F("personnel") + 1)
            if not took_seat:
                room = Room.objects.filter(pk=room_id).only("kind", "visibility").first()
                if room is None or (not invited and not is_listed(room)):
                    raise RoomNotFound()
                if Ban.objects.filter(room_id=room_id, user=user).exists():
                    raise Banned()
                raise RoomFull()
            # Under the room row's lock, which a ban takes too: no ban can slip in between.
            if Ban.objects.filter(room_id=room_id, user=user).exists():
                raise Banned()
            if claim is not None:
                claim()
            room = Room.objects.get(pk=room_id)
            role = Role.OWNER if room.owner_id == user.pk and room.kind == RoomKind.ROOM else Role.MEMBER
            # The (room, user) row exists or is created without racing; a former member's row is reused.
            Membership.objects.bulk_create([Membership(room_id=room_id, user=user)], ignore_conflicts=True)
            flipped = Membership.objects.filter(room_id=room_id, user=user, is_active=False).update(
                is_active=True, joined_at=now, role=role, visible_after_seq=room.last_seq
            )
            if not flipped:
                raise _NoChange()  # a concurrent join of the same user won: give the seat back
    except _NoChange:
        return _unchanged(room_id, user)
    room = Room.objects.select_related("owner").get(pk=room_id)
    membership = Membership.objects.get(room_id=room_id, user=user)
    _joined(room, user, membership, now)
    return MembershipChange(room=room, membership=membership, changed=True)


def _joined(room: Room, user: User, membership: Membership, now: datetime) -> None:
    """What follows every seat taken (a join, an invitation, a room's creation), in its transaction."""
    # With the membership: messaging writes the ENTER message (taking the room's next seq), presence shows
    # the new member after commit (messaging.receivers, presence.receivers).
    signals.member_joined.send(sender=Room, room=room, user=user, membership=membership, at=now)
    # A new member starts with nothing unread: the read position is the room's newest seq, ENTER included.
    room.refresh_from_db(fields=["last_seq"])
    Membership.objects.filter(pk=membership.pk).update(last_read_seq=room.last_seq)
    membership.last_read_seq = room.last_seq
    room.my_role = membership.role  # type: ignore[attr-defined]
    _record_membership_event("member.joined", room, user, now)


def leave_room(*, room_id: int, user: User) -> MembershipChange:
    """Give the seat back. Idempotent; personnel never goes below 0 (the CHECK constraint guards it too)."""
    room_id = _checked_room_id(room_id)
    if active_membership(room_id, user) is None:
        if not Room.objects.filter(pk=room_id, kind=RoomKind.ROOM, visibility=Visibility.PUBLIC).exists():
            raise RoomNotFound()  # unknown, or private to a non-member: nothing to reveal
        return _unchanged(room_id, user)  # the common repeat leave takes no lock at all
    now = timezone.now()
    try:
        with transaction.atomic():
            change = _end_membership(room_id, user, now)
            _record_membership_event("member.left", change.room, user, now)
            return change
    except _NoChange:
        return _unchanged(room_id, user)


def _end_membership(room_id: int, user: User, now: datetime) -> MembershipChange:
    """Give the user's seat back and end their membership, inside the caller's transaction: the one path of
    leave, kick and ban. Raises _NoChange (after undoing its decrement) when the user was not a member."""
    with transaction.atomic():
        # The room row first, as in join; `personnel > 0` keeps the count from going negative.
        gave_seat = Room.objects.filter(pk=room_id, personnel__gt=0).update(personnel=F("personnel") - 1)
        if not gave_seat and not Room.objects.filter(pk=room_id).exists():
            raise RoomNotFound()
        flipped = Membership.objects.active().filter(room_id=room_id, user=user).update(
            is_active=False, left_at=now
        )
        if not flipped:
            raise _NoChange()  # a concurrent leave of the same user won: undo the decrement
    room = Room.objects.select_related("owner").get(pk=room_id)
    membership = Membership.objects.get(room_id=room_id, user=user)
    # In this transaction: messaging writes the LEAVE message, presence records left_at
    # (messaging.receivers, presence.receivers).
    signals.member_left.send(sender=Room, room=room, user=user, membership=membership, at=now)
    publish_member_removed(room_id, user.pk)  # after commit: their sockets to the room close (4403)
    room.my_role = None  # type: ignore[attr-defined]
    return MembershipChange(room=room, membership=membership, changed=True)


def _record_membership_event(kind: str, room: Room, user: User, at: datetime) -> None:
    data = {"room_id": room.pk, "user": user.as_public_dict(), "personnel": room.personnel}
    record_event(kind, room_id=room.pk, data=data, occurred_at=at)


# --- roles and moderation ----------------------------------------------------------------------------
def role_of(room_id: int, user: User) -> str | None:
    """The user's role in the room, or None when not an active member."""
    if not user.is_authenticated:
        return None
    return Membership.objects.active().filter(room_id=room_id, user_id=user.pk).values_list("role", flat=True).first()


def may_moderate(room: Room, actor: User) -> bool:
    """Whether `actor` may act on other members' content in `room` (delete their messages): its owner, a
    moderator, or staff."""
    if actor.is_staff or (room.owner_id is not None and room.owner_id == actor.pk):
        return True
    return role_of(room.pk, actor) in (Role.OWNER, Role.MODERATOR)


def _require_owner_or_staff(room: Room, actor: User) -> None:
    if not (actor.is_staff or (room.owner_id is not None and room.owner_id == actor.pk)):
        raise NotRoomOwner()


def _lock_room_for(room_id: int, actor: User) -> tuple[Room, str | None]:
    """Lock the room row (the first lock of every writer of the room) and read the actor's role under it.
    A non-member who is not staff learns nothing about a private room (RoomNotFound)."""
    room = Room.objects.select_for_update().filter(pk=_checked_room_id(room_id)).first()
    if room is None:
        raise RoomNotFound()
    role = role_of(room_id, actor)
    if role is None and not actor.is_staff:
        if not is_listed(room):
            raise RoomNotFound()
        raise MayNotModerate()
    return room, role


def _user_by_id(user_id: Any, field: str = "user_id") -> User:
    if isinstance(user_id, bool) or not isinstance(user_id, int) or not 0 < user_id <= MAX_ID:
        raise InvalidInput(fields={field: ["Must be a user id."]})
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        raise UserNotFound()
    return user


def _storable_text(text: str) -> bool:
    """PostgreSQL text holds no NUL and no lone surrogate: a name with one is no one's, refused before a query."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _user_by_username(username: Any) -> User:
    """An active user by username, any case (usernames are unique regardless of case, as signup enforces)."""
    name = username.strip().lstrip("@") if isinstance(username, str) else ""
    if not 1 <= len(name) <= 150 or not _storable_text(name):
        raise InvalidInput(fields={"username": ["Must be a username."]})
    user = User.objects.filter(username__iexact=name, is_active=True).first()
    if user is None:
        raise UserNotFound()
    return user


@dataclass(frozen=True)
class ModerationResult:
    room: Room
    user: User
    role: str | None  # the user's role in the room after the action; None when not a member


def _room_event(room_id: int, kind: str, at: datetime, **data: Any) -> int:
    """A moderation event: the room's next seq, a RoomEvent row, Kafka, and every socket of the room."""
    seq = take_seq(room_id, None).seq
    event = RoomEvent.objects.create(room_id=room_id, seq=seq, type=kind, data=data, created_at=at)
    record_event(kind, room_id=room_id, data={"seq": seq, **data}, occurred_at=at)
    publish_room_event(room_id, seq, event.frame(), sent_at=at.timestamp())
    return seq


def _may_act_on(room: Room, actor: User, actor_role: str | None, target_role: str | None) -> None:
    """Owner and staff act on anyone but the owner; a moderator on plain members only."""
    if target_role == Role.OWNER:
        raise MayNotModerate()
    if actor.is_staff or actor_role == Role.OWNER:
        return
    if actor_role == Role.MODERATOR and target_role in (Role.MEMBER, None):
        return
    raise MayNotModerate()


def _result(room_id: int, actor: User, target: User, role: str | None) -> ModerationResult:
    room = rooms_for(actor).get(pk=room_id)
    return ModerationResult(room=room, user=target, role=role)


def kick_member(*, room_id: int, user_id: Any, actor: User) -> ModerationResult:
    """End another member's membership: their seat is freed, their sockets close (4403), presence updates,
    and the room gets a member.kicked event."""
    target = _user_by_id(user_id)
    now = timezone.now()
    with transaction.atomic():
        room, actor_role = _lock_room_for(room_id, actor)
        target_role = role_of(room.pk, target)
        if target.pk == actor.pk:
            raise MayNotModerate("Leave the room instead.")
        _may_act_on(room, actor, actor_role, target_role)
        if target_role is None:
            raise MemberNotFound()
        try:
            _end_membership(room.pk, target, now)
        except _NoChange:
            raise MemberNotFound() from None
        _room_event(room.pk, "member.kicked", now, user=target.as_public_dict(), by=actor.as_public_dict())
    return _result(room.pk, actor, target, None)


def ban_member(*, room_id: int, user_id: Any, actor: User) -> ModerationResult:
    """Kick (if a member) and refuse every later join and invitation until unbanned. Banning a user who is
    already banned changes nothing and takes no seq."""
    target = _user_by_id(user_id)
    now = timezone.now()
    with transaction.atomic():
        room, actor_role = _lock_room_for(room_id, actor)
        if room.kind == RoomKind.DM:
            raise MayNotModerate("A direct conversation has no bans; block the user instead.")
        target_role = role_of(room.pk, target)
        if target.pk == actor.pk:
            raise MayNotModerate("You cannot ban yourself.")
        _may_act_on(room, actor, actor_role, target_role)
        if Ban.objects.filter(room_id=room.pk, user=target).exists():
            # Banned before (bans are written under this room row lock, so this read cannot race one).
            return _result(room.pk, actor, target, target_role)
        Ban.objects.create(room_id=room.pk, user=target, banned_by=actor, created_at=now)
        if target_role is not None:
            try:
                _end_membership(room.pk, target, now)
            except _NoChange:
                pass
        _room_event(room.pk, "member.banned", now, user=target.as_public_dict(), by=actor.as_public_dict())
    return _result(room.pk, actor, target, None)


def unban_member(*, room_id: int, user_id: Any, actor: User) -> ModerationResult:
    """Lift a ban; the user may join (or accept an invitation) again. Lifting no ban changes nothing."""
    target = _user_by_id(user_id)
    now = timezone.now()
    with transaction.atomic():
        room, actor_role = _lock_room_for(room_id, actor)
        _may_act_on(room, actor, actor_role, None)
        deleted, _ = Ban.objects.filter(room_id=room.pk, user=target).delete()
        if deleted:
            _room_event(room.pk, "member.unbanned", now, user=target.as_public_dict(), by=actor.as_public_dict())
    return _result(room.pk, actor, target, role_of(room.pk, target))


def bans_of(*, room_id: int, actor: User) -> list[dict[str, Any]]:
    """The room's bans, for its owner, moderators and staff."""
    with transaction.atomic():
        room, actor_role = _lock_room_for(room_id, actor)
        _may_act_on(room, actor, actor_role, None)
        bans = Ban.objects.filter(room_id=room.pk).select_related("user", "banned_by").order_by("-created_at")
        return [
            {
                "user": ban.user.as_public_dict(),
                "by": ban.banned_by.as_public_dict() if ban.banned_by else None,
                "created_at": ban.created_at.isoformat(),
            }
            for ban in bans
        ]


ASSIGNABLE_ROLES = (Role.MODERATOR, Role.MEMBER)


def set_role(*, room_id: int, user_id: Any, actor: User, role: Any) -> ModerationResult:
    """The owner (or staff) makes a member a moderator or a plain member again; role.changed."""
    target = _user_by_id(user_id)
    if role not in ASSIGNABLE_ROLES:
        raise InvalidInput(fields={"role": ['Must be "moderator" or "member" (hand ownership over with /owner).']})
    now = timezone.now()
    with transaction.atomic():
        room, actor_role = _lock_room_for(room_id, actor)
        if room.kind == RoomKind.DM:
            raise MayNotModerate("A direct conversation has no roles.")
        if not (actor.is_staff or actor_role == Role.OWNER):
            raise MayNotModerate("Only the room's owner may change roles.")
        target_role = role_of(room.pk, target)
        if target_role is None:
            raise MemberNotFound()
        if target_role == Role.OWNER:
            raise MayNotModerate("The owner's role changes by handing ownership to another member.")
        if target_role != role:
            Membership.objects.active().filter(room_id=room.pk, user=target).update(role=role)
            _room_event(
                room.pk, "role.changed", now, user=target.as_public_dict(), by=actor.as_public_dict(), role=role
            )
    return _result(room.pk, actor, target, role)


def transfer_ownership(*, room_id: int, user_id: Any, actor: User) -> ModerationResult:
    """The owner (or staff) hands the room to another member, who becomes its owner; the former owner stays
    as a moderator. Two role.changed events, in this order: the new owner, then the former one."""
    target = _user_by_id(user_id)
    now = timezone.now()
    with transaction.atomic():
        room, actor_role = _lock_room_for(room_id, actor)
        if room.kind == RoomKind.DM:
            raise MayNotModerate("A direct conversation has no owner.")
        if not (actor.is_staff or actor_role == Role.OWNER):
            raise MayNotModerate("Only the room's owner may hand it over.")
        target_role = role_of(room.pk, target)
        if target_role is None:
            raise MemberNotFound()
        if target_role != Role.OWNER:
            former = room.owner
            Room.objects.filter(pk=room.pk).update(owner=target)
            Membership.objects.active().filter(room_id=room.pk, user=target).update(role=Role.OWNER)
            by = actor.as_public_dict()
            _room_event(room.pk, "role.changed", now, user=target.as_public_dict(), by=by, role=Role.OWNER)
            if former is not None and former.pk != target.pk:
                demoted = Membership.objects.active().filter(room_id=room.pk, user=former).update(role=Role.MODERATOR)
                if demoted:
                    _room_event(
                        room.pk, "role.changed", now, user=former.as_public_dict(), by=by, role=Role.MODERATOR
                    )
            record_event("room.updated", room_id=room.pk, data=room_event_data(get_room(room.pk)))
    return _result(room.pk, actor, target, Role.OWNER)


# --- invitations -------------------------------------------------------------------------------------
INVITE_DEFAULT_SECONDS = 7 * 24 * 3600
INVITE_MAX_SECONDS = 30 * 24 * 3600
INVITE_MAX_USES = 10_000
# What room_invites shows at most: the newest usable ones (creation is rate limited to 60 an hour per user).
INVITES_LISTED_MAX = 200


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class NewInvite:
    invite: Invite
    token: str  # shown once, to its creator; only its hash is stored


def _clean_optional_int(value: Any, field: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(fields={field: [f"Must be a whole number from {low} to {high}."]})
    return value


def create_invite(
    *,
    room_id: int,
    actor: User,
    user_id: Any = None,
    username: Any = None,
    max_uses: Any = None,
    expires_in_seconds: Any = None,
) -> NewInvite:
    """An invitation to the room, by its owner, a moderator or staff: for one user (`user_id`, or `username`
    for a person typing a name), or a link. It expires (7 days by default, 30 at most); `max_uses` bounds its
    uses (1 for a user's invitation)."""
    if user_id is not None and username is not None:
        raise InvalidInput(fields={"username": ["Give user_id or username, not both."]})
    invitee = None
    if user_id is not None:
        invitee = _user_by_id(user_id)
    elif username is not None:
        invitee = _user_by_username(username)
    max_uses = _clean_optional_int(max_uses, "max_uses", 1, INVITE_MAX_USES)
    seconds = _clean_optional_int(expires_in_seconds, "expires_in_seconds", 60, INVITE_MAX_SECONDS)
    if invitee is not None and max_uses is None:
        max_uses = 1
    now = timezone.now()
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        room, actor_role = _lock_room_for(room_id, actor)
        if room.kind == RoomKind.DM:
            raise MayNotModerate("A direct conversation takes no invitations.")
        _require_inviter(actor, actor_role, "Only the room's owner or a moderator may invite.")
        invite = Invite.objects.create(
            room=room,
            token_hash=token_hash(token),
            user=invitee,
            created_by=actor,
            max_uses=max_uses,
            expires_at=now + timedelta(seconds=seconds or INVITE_DEFAULT_SECONDS),
            created_at=now,
        )
    invite.room = rooms_for(actor).get(pk=room.pk)
    return NewInvite(invite=invite, token=token)


def _invite_by_token(token: Any) -> Invite | None:
    if not isinstance(token, str) or not 1 <= len(token) <= 200:
        return None
    return Invite.objects.filter(token_hash=token_hash(token)).first()


def revoke_invite(*, room_id: int, token: Any, actor: User) -> None:
    """The owner, a moderator or staff revoke an invitation: it is refused from now on (invite_invalid)."""
    _revoke(room_id, actor, lambda: _invite_by_token(token))


def revoke_invite_by_id(*, room_id: int, invite_id: Any, actor: User) -> None:
    """Revoke by the id `room_invites` lists: the token is shown once, so a list cannot offer it."""
    _revoke(room_id, actor, lambda: Invite.objects.filter(pk=invite_id).first() if is_room_id(invite_id) else None)


def _revoke(room_id: int, actor: User, find: Callable[[], Invite | None]) -> None:
    with transaction.atomic():
        room, actor_role = _lock_room_for(room_id, actor)
        _require_inviter(actor, actor_role, "Only the room's owner or a moderator may revoke an invitation.")
        invite = find()
        if invite is None or invite.room_id != room.pk or invite.revoked_at is not None:
            raise InviteInvalid()
        Invite.objects.filter(pk=invite.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def _require_inviter(actor: User, actor_role: str | None, detail: str) -> None:
    if not (actor.is_staff or actor_role in (Role.OWNER, Role.MODERATOR)):
        raise MayNotModerate(detail)


def room_invites(*, room_id: int, actor: User) -> list[dict[str, Any]]:
    """The room's invitations that can still be used (not revoked, not expired, uses left), newest first,
    for its owner, moderators and staff. Without their tokens: only hashes are stored."""
    now = timezone.now()
    with transaction.atomic():
        room, actor_role = _lock_room_for(room_id, actor)
        _require_inviter(actor, actor_role, "Only the room's owner or a moderator may see its invitations.")
        invites = (
            Invite.objects.filter(room_id=room.pk, revoked_at__isnull=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .filter(Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses")))
            .select_related("user", "created_by")
            .order_by("-created_at", "-id")[:INVITES_LISTED_MAX]
        )
        return [invite_summary(invite) for invite in invites]


def invite_summary(invite: Invite) -> dict[str, Any]:
    """An invitation as a list shows it: {id, user, created_by, max_uses, uses, expires_at, created_at}."""
    return {
        "id": invite.pk,
        "user": invite.user.as_public_dict() if invite.user is not None else None,
        "created_by": invite.created_by.as_public_dict() if invite.created_by is not None else None,
        "max_uses": invite.max_uses,
        "uses": invite.uses,
        "expires_at": invite.expires_at.isoformat() if invite.expires_at else None,
        "created_at": invite.created_at.isoformat(),
    }


def _invite_refusal(invite: Invite | None, user: User, now: datetime) -> Exception | None:
    if invite is None or invite.revoked_at is not None:
        return InviteInvalid()
    if invite.user_id is not None and invite.user_id != user.pk:
        return InviteNotForYou()
    if invite.expires_at is not None and invite.expires_at <= now:
        return InviteExpired()
    if invite.max_uses is not None and invite.uses >= invite.max_uses:
        return InviteUsedUp()
    return None


def accept_invite(*, token: Any, user: User) -> MembershipChange:
    """Join the invitation's room. A use is counted only when a seat is taken (one conditional UPDATE, so
    `max_uses` holds under concurrent accepts); a member accepting again uses nothing."""
    now = timezone.now()
    invite = _invite_by_token(token)
    refusal = _invite_refusal(invite, user, now)
    if isinstance(refusal, (InviteExpired, InviteUsedUp)) and active_membership(invite.room_id, user) is not None:  # type: ignore[union-attr]
        refusal = None  # already in: accepting again is a no-op, whatever is left of the invitation
    if refusal is not None:
        raise refusal
    assert invite is not None
    if active_membership(invite.room_id, user) is not None:
        return _unchanged(invite.room_id, user)

    def claim() -> None:
        counted = (
            Invite.objects.filter(pk=invite.pk, revoked_at__isnull=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .filter(Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses")))
            .update(uses=F("uses") + 1)
        )
        if not counted:
            raise _invite_refusal(Invite.objects.filter(pk=invite.pk).first(), user, now) or InviteUsedUp()

    return _join_checked(invite.room_id, user, invited=True, claim=claim)


def invitation_room(*, token: Any, user: User) -> Room:
    """The room an invitation leads to, for the page that offers to accept it: the refusals accept_invite
    would give first (so a wrong, used-up or foreign token reveals no room), nothing written."""
    invite = _invite_by_token(token)
    if invite is not None and active_membership(invite.room_id, user) is not None:
        return rooms_for(user).get(pk=invite.room_id)
    refusal = _invite_refusal(invite, user, timezone.now())
    if refusal is not None:
        raise refusal
    assert invite is not None
    return rooms_for(user).get(pk=invite.room_id)


def invite_dict(new: NewInvite) -> dict[str, Any]:
    """The creation's answer: the contract's {token, room, user, max_uses, uses, expires_at}, plus the
    summary's `id`, `created_by` and `created_at` (so a page can list and revoke it later)."""
    return {"token": new.token, "room": new.invite.room, **invite_summary(new.invite)}


# --- direct messages and blocks ----------------------------------------------------------------------
def blocked_between(a_id: int, b_id: int) -> bool:
    return Block.objects.filter(
        Q(blocker_id=a_id, blocked_id=b_id) | Q(blocker_id=b_id, blocked_id=a_id)
    ).exists()


def _blocked_dm(room_id: int) -> QuerySet[Room]:
    low, high = OuterRef("dm_user_low_id"), OuterRef("dm_user_high_id")
    either_way = Block.objects.filter(Q(blocker_id=low, blocked_id=high) | Q(blocker_id=high, blocked_id=low))
    return Room.objects.filter(pk=room_id, kind=RoomKind.DM).filter(Exists(either_way)).values_list("pk")[:1]


# Compiled once (core.compiled): the ORM built this fixed query, its Exists included, anew for every message.
_BLOCKED_DM = CompiledQuery(_blocked_dm, room_id=int)


def dm_send_blocked(room_id: int) -> bool:
    """Whether the room is a DM whose two users have a block between them (either way): one indexed query,
    by primary key, for every send."""
    return bool(_BLOCKED_DM.rows(room_id=room_id))


@dataclass(frozen=True)
class DmResult:
    room: Room
    created: bool


def open_dm(*, user: User, user_id: Any) -> DmResult:
    """The one DM of the pair (created with both as members, or found). A block either way refuses a new DM.
    Two concurrent opens of the same pair: the unique pair lets one insert win; the other returns it."""
    other = _user_by_id(user_id)
    if other.pk == user.pk:
        raise InvalidInput(fields={"user_id": ["You cannot open a conversation with yourself."]})
    if blocked_between(user.pk, other.pk):
        raise Blocked()
    low, high = sorted([user, other], key=lambda u: u.pk)
    existing = Room.objects.filter(dm_user_low=low, dm_user_high=high).first()
    if existing is not None:
        return DmResult(room=_rejoin_dm(existing.pk, user), created=False)
    try:
        with transaction.atomic():
            room = Room.objects.create(
                title=f"{low.username}, {high.username}"[:TITLE_MAX_LENGTH],
                owner=None,
                max_personnel=DM_MAX_PERSONNEL,
                kind=RoomKind.DM,
                visibility=Visibility.PRIVATE,
                history_visibility=HistoryVisibility.ALL,
                dm_user_low=low,
                dm_user_high=high,
            )
            record_event("room.created", room_id=room.pk, data=room_event_data(room))
            _join(room.pk, user, invited=True)
            _join(room.pk, other, invited=True)
    except IntegrityError:
        existing = Room.objects.filter(dm_user_low=low, dm_user_high=high).first()
        if existing is None:
            raise
        return DmResult(room=_rejoin_dm(existing.pk, user), created=False)
    return DmResult(room=rooms_for(user).get(pk=room.pk), created=True)


def _rejoin_dm(room_id: int, user: User) -> Room:
    """A DM the caller left is theirs again when they open it."""
    if active_membership(room_id, user) is None:
        _join_checked(room_id, user, invited=True)
    return rooms_for(user).get(pk=room_id)


def dm_partners(user: User, room_ids: list[int]) -> dict[int, User]:
    """The other user of each of these rooms that is a DM, in one query: a DM is shown by its partner's
    name (its stored title names both users)."""
    if not room_ids:
        return {}
    dms = Room.objects.filter(pk__in=room_ids, kind=RoomKind.DM).select_related("dm_user_low", "dm_user_high")
    partners = {dm.pk: dm.dm_user_high if dm.dm_user_low_id == user.pk else dm.dm_user_low for dm in dms}
    return {room_id: partner for room_id, partner in partners.items() if partner is not None}


def block_user(*, user: User, user_id: Any) -> None:
    other = _user_by_id(user_id)
    if other.pk == user.pk:
        raise InvalidInput(fields={"user_id": ["You cannot block yourself."]})
    Block.objects.bulk_create([Block(blocker=user, blocked=other, created_at=timezone.now())], ignore_conflicts=True)


def unblock_user(*, user: User, user_id: Any) -> None:
    other = _user_by_id(user_id)
    Block.objects.filter(blocker=user, blocked=other).delete()


def blocked_users(user: User) -> list[dict[str, Any]]:
    blocks = Block.objects.filter(blocker=user).select_related("blocked").order_by("-created_at")
    return [{"user": b.blocked.as_public_dict(), "created_at": b.created_at.isoformat()} for b in blocks]


# --- the room itself ---------------------------------------------------------------------------------
def update_room(
    *,
    room_id: int,
    actor: User,
    title: Any = None,
    max_personnel: Any = None,
    visibility: Any = None,
    history_visibility: Any = None,
) -> Room:
    """Rename, resize, or change who sees the room and its history. max_personnel never drops below the
    seats already taken (conditional UPDATE). A DM keeps its shape."""
    changes: dict[str, Any] = {}
    if title is not None:
        changes["title"] = clean_title(title)
    if max_personnel is not None:
        changes["max_personnel"] = clean_max_personnel(max_personnel)
    if visibility is not None:
        changes["visibility"] = clean_visibility(visibility)
    if history_visibility is not None:
        changes["history_visibility"] = clean_history_visibility(history_visibility)
    with transaction.atomic():
        room = get_room(room_id)
        if not actor.is_staff and role_of(room.pk, actor) is None and not is_listed(room):
            raise RoomNotFound()
        _require_owner_or_staff(room, actor)
        if room.kind == RoomKind.DM and changes:
            raise NotRoomOwner("A direct conversation cannot be changed.")
        if not changes:
            return get_visible_room(room_id, actor) if not actor.is_staff else rooms_for(actor).get(pk=room_id)
        query = Room.objects.filter(pk=room_id)
        if "max_personnel" in changes:
            query = query.filter(personnel__lte=changes["max_personnel"])
        if not query.update(**changes):
            if not Room.objects.filter(pk=room_id).exists():
                raise RoomNotFound()  # deleted meanwhile
            raise MaxPersonnelBelowPersonnel()
        room = rooms_for(actor).get(pk=room_id)
        record_event("room.updated", room_id=room_id, data=room_event_data(room))
        return room


def delete_room(*, room_id: int, actor: User) -> None:
    with transaction.atomic():
        room = get_room(room_id)
        if not actor.is_staff and role_of(room.pk, actor) is None and not is_listed(room):
            raise RoomNotFound()
        _require_owner_or_staff(room, actor)
        # The room row first, the order join, leave and send use: joins queue behind the delete and then
        # find no room, and no send takes a seq while the room goes away.
        if Room.objects.select_for_update().filter(pk=room_id).first() is None:
            raise RoomNotFound()
        # Presence forgets the room after commit (presence.receivers).
        signals.room_deleting.send(sender=Room, room=room, actor=actor)
        record_event("room.deleted", room_id=room_id, data=room_event_data(room))
        publish_room_deleted(room_id)  # after commit: every socket of the room closes (4404)
        room.delete()
