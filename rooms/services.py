"""The rooms domain: the only code that changes rooms, personnel or membership.

The member limit is exact because a seat is taken by one conditional UPDATE
(`personnel = personnel + 1 WHERE personnel < max_personnel`) in the same transaction as the membership
row: no lock held across a read, no read-modify-write, the database decides. On PostgreSQL the row lock of
that UPDATE queues concurrent joiners; on SQLite the IMMEDIATE transaction does.

Lock order everywhere: the room row, then membership rows. Join and leave start with their conditional
UPDATE of the room, delete locks the room before its cascade, and messaging's send takes its seq from the
room row: no transaction holds a membership row while it waits for a room, so none can deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from accounts.models import User
from core.domain import DomainError, Forbidden, InvalidInput, NotFound
from events.services import record_event
from realtime.publish import publish_member_removed, publish_room_deleted

from . import signals
from .models import MAX_MAX_PERSONNEL, MIN_MAX_PERSONNEL, TITLE_MAX_LENGTH, Membership, Room


class RoomNotFound(NotFound):
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
    }


MAX_ID = 2**63 - 1


def _is_room_id(value: Any) -> bool:
    """Whether any database can be asked about this id (a path's <int:...> is unbounded)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


def _checked_room_id(room_id: Any) -> int:
    """The id itself, or RoomNotFound for one no room can have: never an overflow error."""
    if not _is_room_id(room_id):
        raise RoomNotFound()
    return room_id


def get_room(room_id: int) -> Room:
    try:
        return Room.objects.select_related("owner").get(pk=_checked_room_id(room_id))
    except Room.DoesNotExist:
        raise RoomNotFound() from None


def active_membership(room_id: int, user: User) -> Membership | None:
    if not user.is_authenticated or not _is_room_id(room_id):
        return None
    return Membership.objects.active().filter(room_id=room_id, user_id=user.pk).first()


def require_member(room_id: int, user: User) -> Membership:
    """The membership of a member, or RoomNotFound / NotRoomMember: the gate of every members-only read."""
    membership = active_membership(_checked_room_id(room_id), user)
    if membership is not None:
        return membership
    if not Room.objects.filter(pk=room_id).exists():
        raise RoomNotFound()
    raise NotRoomMember()


def search_rooms(search: str = "") -> QuerySet[Room]:
    """Rooms whose title contains `search` (any case), newest first: the one room search of REST, GraphQL
    and the pages. A search longer than any title is cut to that length (it could match nothing more)."""
    rooms = Room.objects.select_related("owner").order_by("-id")
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


def create_room(*, owner: User, title: Any, max_personnel: Any) -> Room:
    """Create a room; its creator becomes its first member."""
    title = clean_title(title)
    max_personnel = clean_max_personnel(max_personnel)
    with transaction.atomic():
        room = Room.objects.create(title=title, owner=owner, max_personnel=max_personnel)
        record_event("room.created", room_id=room.pk, data=room_event_data(room))
        _join(room.pk, owner)
        room.refresh_from_db()
    return room


class _NoChange(Exception):
    """Raised inside a membership change's savepoint to undo its seat update when the flip found nothing."""


def join_room(*, room_id: int, user: User) -> MembershipChange:
    """Take a seat. Idempotent: a member joining again changes nothing. RoomFull when no seat is left."""
    room_id = _checked_room_id(room_id)
    try:
        with transaction.atomic():
            return _join(room_id, user)
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
    return MembershipChange(room=get_room(room_id), membership=membership, changed=False)


def _join(room_id: int, user: User) -> MembershipChange:
    if active_membership(room_id, user) is not None:
        return _unchanged(room_id, user)  # the common repeat join takes no lock at all
    now = timezone.now()
    try:
        with transaction.atomic():
            # The seat first: this UPDATE takes the room row lock, so every writer of a room (join, leave,
            # send, delete) queues on that one row before touching any membership row: no lock cycle.
            took_seat = Room.objects.filter(pk=room_id, personnel__lt=F("max_personnel")).update(
                personnel=F("personnel") + 1
            )
            if not took_seat:
                if not Room.objects.filter(pk=room_id).exists():
                    raise RoomNotFound()
                raise RoomFull()
            # The (room, user) row exists or is created without racing; a former member's row is reused.
            Membership.objects.bulk_create([Membership(room_id=room_id, user=user)], ignore_conflicts=True)
            flipped = Membership.objects.filter(room_id=room_id, user=user, is_active=False).update(
                is_active=True, joined_at=now
            )
            if not flipped:
                raise _NoChange()  # a concurrent join of the same user won: give the seat back
    except _NoChange:
        return _unchanged(room_id, user)
    room = Room.objects.select_related("owner").get(pk=room_id)
    membership = Membership.objects.get(room_id=room_id, user=user)
    # In this transaction, with the membership: messaging writes the ENTER message (taking the room's next
    # seq), presence shows the new member after commit (messaging.receivers, presence.receivers).
    signals.member_joined.send(sender=Room, room=room, user=user, membership=membership, at=now)
    # A new member starts with nothing unread: the read position is the room's newest seq, ENTER included.
    room.refresh_from_db(fields=["last_seq"])
    Membership.objects.filter(pk=membership.pk).update(last_read_seq=room.last_seq)
    membership.last_read_seq = room.last_seq
    _record_membership_event("member.joined", room, user, now)
    return MembershipChange(room=room, membership=membership, changed=True)


def leave_room(*, room_id: int, user: User) -> MembershipChange:
    """Give the seat back. Idempotent; personnel never goes below 0 (the CHECK constraint guards it too)."""
    room_id = _checked_room_id(room_id)
    if active_membership(room_id, user) is None:
        return _unchanged(room_id, user)  # the common repeat leave takes no lock at all
    now = timezone.now()
    try:
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
            _record_membership_event("member.left", room, user, now)
            return MembershipChange(room=room, membership=membership, changed=True)
    except _NoChange:
        return _unchanged(room_id, user)


def _record_membership_event(kind: str, room: Room, user: User, at: datetime) -> None:
    data = {"room_id": room.pk, "user": user.as_public_dict(), "personnel": room.personnel}
    record_event(kind, room_id=room.pk, data=data, occurred_at=at)


def may_moderate(room: Room, actor: User) -> bool:
    """Whether `actor` may act on other members' content in `room` (delete their messages): its owner or staff."""
    return bool(actor.is_staff or (room.owner_id is not None and room.owner_id == actor.pk))


def _require_owner_or_staff(room: Room, actor: User) -> None:
    if not (actor.is_staff or (room.owner_id is not None and room.owner_id == actor.pk)):
        raise NotRoomOwner()


def update_room(*, room_id: int, actor: User, title: Any = None, max_personnel: Any = None) -> Room:
    """Rename or resize. max_personnel never drops below the seats already taken (conditional UPDATE)."""
    changes: dict[str, Any] = {}
    if title is not None:
        changes["title"] = clean_title(title)
    if max_personnel is not None:
        changes["max_personnel"] = clean_max_personnel(max_personnel)
    with transaction.atomic():
        room = get_room(room_id)
        _require_owner_or_staff(room, actor)
        if not changes:
            return room
        query = Room.objects.filter(pk=room_id)
        if "max_personnel" in changes:
            query = query.filter(personnel__lte=changes["max_personnel"])
        if not query.update(**changes):
            if not Room.objects.filter(pk=room_id).exists():
                raise RoomNotFound()  # deleted meanwhile
            raise MaxPersonnelBelowPersonnel()
        room = get_room(room_id)
        record_event("room.updated", room_id=room_id, data=room_event_data(room))
        return room


def delete_room(*, room_id: int, actor: User) -> None:
    with transaction.atomic():
        room = get_room(room_id)
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
