"""The messaging domain: send, history, read positions. One path for REST, WebSocket and GraphQL.

seq is taken from the room row (`UPDATE rooms_room SET last_seq = last_seq + 1 ... RETURNING last_seq`) in the
transaction that inserts the message: a rolled-back send gives its seq back, so seq is gapless per room, and
the row lock serialises writers of one room only. The same UPDATE checks membership, so a send costs one
lookup (idempotency), one UPDATE, two INSERTs (message, outbox) and the commit.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import User
from core.domain import DomainError, InvalidInput
from events.services import record_event
from realtime.publish import publish_room_event, publish_room_frame
from rooms.models import Membership, Room
from rooms.services import NotRoomMember, RoomNotFound, require_member

from .frames import message_frame, read_frame
from .models import Message, MessageKind

HISTORY_MAX_LIMIT = 200
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


class BodyEmpty(DomainError):
    code = "body_empty"
    default_detail = "The message body is empty."


class BodyTooLong(DomainError):
    code = "body_too_long"
    default_detail = f"The message body is longer than {settings.MESSAGE_BODY_MAX_CHARS} characters."


class InvalidClientId(DomainError):
    code = "invalid_client_id"
    default_detail = "client_id must be 1-64 characters of letters, digits and - _ . :"


@dataclass(frozen=True)
class SendResult:
    message: dict[str, Any]  # the contract's Message
    created: bool  # False: the client_id was seen before and nothing new was stored


def message_to_dict(message: Message, sender: User | None) -> dict[str, Any]:
    """The contract's Message shape; `sender` is passed in so that no query is made for it."""
    return {
        "id": message.pk,
        "room": message.room_id,
        "seq": message.seq,
        "client_id": message.client_id,
        "kind": message.kind,
        "sender": sender.as_public_dict() if sender is not None else None,
        "body": message.body,
        "created_at": message.created_at.isoformat(),
    }


def clean_body(body: Any) -> str:
    if not isinstance(body, str):
        raise InvalidInput(fields={"body": ["Must be a string."]})
    body = body.strip()
    if not body:
        raise BodyEmpty()
    if len(body) > settings.MESSAGE_BODY_MAX_CHARS:
        raise BodyTooLong()
    if "\x00" in body:  # PostgreSQL text cannot hold NUL: a clear refusal, not a database error frame
        raise InvalidInput(fields={"body": ["Null characters are not allowed."]})
    return body


def clean_client_id(client_id: Any) -> str:
    if not isinstance(client_id, str) or not CLIENT_ID_RE.match(client_id):
        raise InvalidClientId()
    return client_id


def _next_seq(room_id: int, sender_id: int | None) -> int | None:
    """Take the room's next seq; with a sender, only if they are an active member. None: refused."""
    table_room = Room._meta.db_table
    sql = f"UPDATE {table_room} SET last_seq = last_seq + 1 WHERE id = %s"  # noqa: S608
    params: list[Any] = [room_id]
    if sender_id is not None:
        # The membership rule is the queryset's (Membership.objects.active()), compiled into this UPDATE.
        member_sql, member_params = (
            Membership.objects.active().filter(room_id=room_id, user_id=sender_id).values("pk").query.sql_with_params()
        )
        sql += f" AND EXISTS ({member_sql})"
        params += list(member_params)
    with connection.cursor() as cursor:
        cursor.execute(sql + " RETURNING last_seq", params)
        row = cursor.fetchone()
    return int(row[0]) if row else None


def _store(room_id: int, sender: User | None, kind: str, client_id: str, body: str, at: datetime) -> Message:
    seq = _next_seq(room_id, sender.pk if sender is not None and kind == MessageKind.TALK else None)
    if seq is None:
        if not Room.objects.filter(pk=room_id).exists():
            raise RoomNotFound()
        raise NotRoomMember()
    message = Message.objects.create(
        room_id=room_id, seq=seq, client_id=client_id, kind=kind, sender=sender, body=body, created_at=at
    )
    payload = message_to_dict(message, sender)
    record_event("message.created", room_id=room_id, data=payload, occurred_at=at)
    publish_room_event(room_id, seq, message_frame(payload), sent_at=at.timestamp())
    return message


def send_message(*, room_id: int, sender: User, client_id: Any, body: Any) -> SendResult:
    """Store a TALK message once per (room, sender, client_id) and publish it after commit."""
    client_id = clean_client_id(client_id)
    body = clean_body(body)
    existing = Message.objects.filter(room_id=room_id, sender=sender, client_id=client_id).first()
    if existing is not None:
        return SendResult(message=message_to_dict(existing, sender), created=False)
    try:
        with transaction.atomic():
            message = _store(room_id, sender, MessageKind.TALK, client_id, body, timezone.now())
    except IntegrityError:
        # A concurrent send of the same client_id won the race; ours rolled back (and gave its seq back).
        existing = Message.objects.filter(room_id=room_id, sender=sender, client_id=client_id).first()
        if existing is None:
            raise
        return SendResult(message=message_to_dict(existing, sender), created=False)
    return SendResult(message=message_to_dict(message, sender), created=True)


def post_membership_message(*, room_id: int, user: User, kind: str, at: datetime) -> Message:
    """ENTER/LEAVE, written inside the membership change's transaction (see messaging.receivers)."""
    return _store(room_id, user, kind, f"{kind.lower()}-{uuid.uuid4()}", "", at)


def history(
    *,
    room_id: int,
    user: User,
    after_seq: int | None = None,
    before_seq: int | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], bool]:
    """Members-only history, ascending by seq. With before_seq alone, the newest page below it."""
    require_member(room_id, user)
    limit = max(1, min(int(limit), HISTORY_MAX_LIMIT))
    query = Message.objects.filter(room_id=room_id).select_related("sender")
    if after_seq is not None:
        query = query.filter(seq__gt=after_seq)
    if before_seq is not None:
        query = query.filter(seq__lt=before_seq)
    if since is not None:
        query = query.filter(created_at__gte=since)
    if before_seq is not None and after_seq is None and since is None:
        page = list(query.order_by("-seq")[: limit + 1])
        has_more = len(page) > limit
        page = list(reversed(page[:limit]))
    else:
        page = list(query.order_by("seq")[: limit + 1])
        has_more = len(page) > limit
        page = page[:limit]
    return [message_to_dict(m, m.sender) for m in page], has_more


def replay_page(*, room_id: int, after_seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """One page of a resume as (seq, frame), for a socket whose membership was checked."""
    query = Message.objects.filter(room_id=room_id, seq__gt=after_seq).select_related("sender").order_by("seq")
    return [(m.seq, message_frame(message_to_dict(m, m.sender))) for m in query[:limit]]


def frames_between(*, room_id: int, after_seq: int, up_to_seq: int) -> list[tuple[int, dict[str, Any]]]:
    """The room's events with after_seq < seq <= up_to_seq as (seq, frame): how a live stream fills a gap."""
    query = (
        Message.objects.filter(room_id=room_id, seq__gt=after_seq, seq__lte=up_to_seq)
        .select_related("sender")
        .order_by("seq")
    )
    return [(m.seq, message_frame(message_to_dict(m, m.sender))) for m in query]


def unread_count(*, room_id: int, user_id: int, last_read_seq: int) -> int:
    return (
        Message.objects.filter(room_id=room_id, seq__gt=last_read_seq, kind=MessageKind.TALK)
        .exclude(sender_id=user_id)
        .count()
    )


def mark_read(*, room_id: int, user: User, seq: Any) -> tuple[int, int]:
    """Move the read position forward (never back, never past the room's newest seq)."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise InvalidInput(fields={"seq": ["Must be a non-negative integer."]})
    membership = require_member(room_id, user)
    last_seq = Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).first() or 0
    target = min(seq, last_seq)
    moved = Membership.objects.filter(pk=membership.pk, last_read_seq__lt=target).update(last_read_seq=target)
    last_read = max(membership.last_read_seq, target)
    if moved:
        # Every socket of the room (the reader's other tabs included) sees the new position, whichever
        # edge moved it. Read positions are not mirrored to Kafka: they are per-user view state, written
        # about once per message per reader.
        publish_room_frame(room_id, read_frame(user.as_public_dict(), last_read))
    return last_read, unread_count(room_id=room_id, user_id=user.pk, last_read_seq=last_read)


def my_rooms_queryset(user: User):  # type: ignore[no-untyped-def]
    """The caller's active memberships with unread counts and the last message id, in constant queries."""
    unread = (
        Message.objects.filter(room_id=OuterRef("room_id"), seq__gt=OuterRef("last_read_seq"), kind=MessageKind.TALK)
        .exclude(sender_id=user.pk)
        .order_by()
        .values("room_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    last_message = Message.objects.filter(room_id=OuterRef("room_id")).order_by("-seq").values("id")[:1]
    return (
        Membership.objects.active().filter(user=user)
        .select_related("room", "room__owner")
        .annotate(unread=Coalesce(Subquery(unread), 0), last_message_id=Subquery(last_message))
        .order_by("-room__last_seq", "-room_id")
    )


def last_messages_by_id(ids: list[int]) -> dict[int, dict[str, Any]]:
    messages = Message.objects.filter(id__in=[i for i in ids if i]).select_related("sender")
    return {m.pk: message_to_dict(m, m.sender) for m in messages}

