"""The messaging domain: send, change (edit, delete, react), history, resume, read positions. One path
for REST, WebSocket and GraphQL.

seq is taken from the room row (rooms.sequence.take_seq: `UPDATE rooms_room SET last_seq = last_seq + 1 ...
RETURNING last_seq`) in the transaction that inserts the message: a rolled-back send gives its seq back, so seq is gapless per room, and
the row lock serialises writers of one room only. The same UPDATE checks membership, so a send costs one
lookup (idempotency), one UPDATE, two INSERTs (message, outbox) and the commit.

A change takes its seq the same way, first thing in its transaction: the room row's lock then serialises
every change of the room's messages too (no message row lock is needed, on PostgreSQL or SQLite), and a
change that turns out to change nothing rolls back and gives its seq back ("a retried change changes
nothing and takes no seq").

Reads that may go to the read replica (core/replica.py): history pages and a socket's resume replay. The
replica applies the primary's commits in order, so what it holds of a room is every event up to its copy of
the room's `last_seq` ("applied"); each of these reads takes that prefix from the replica and the seqs past
it from the primary, so a lagging replica makes a read slower, never shorter. Gap fill (frames_between)
and everything else read the primary.

History visibility: a member of a room that shows history "since_join" reads nothing at or below their
join's seq (rooms.models.history_floor) on any path here: history, resume, gap fill (the live frame of a
change carries its message's seq, and the chat socket drops what its member may not read), replies.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, NotSupportedError, connection, transaction
from django.db.models import Count, Max, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import User
from core.compiled import CompiledQuery, save_fields
from core.domain import DomainError, Forbidden, InvalidInput, NotFound
from core.replica import replica_alias
from events.services import PayloadSQL, record_event, rewrite_events
from realtime.publish import publish_room_event, publish_room_frame, publish_user_frame
from rooms.models import HistoryVisibility, Membership, Room, RoomEvent, history_floor
from rooms.sequence import take_seq
from rooms.services import Blocked, dm_send_blocked, may_moderate, require_member

from .attachments import (
    attachment_summary,
    bind_attachments,
    clean_attachment_ids,
    pending_attachments,
    remove_message_attachments,
    with_links,
    without_links,
)
from .emoji import clean_emoji
from .frames import mention_frame, message_frame, message_updated_frame, read_frame
from .models import (
    MAX_DISTINCT_REACTIONS,
    MAX_REACTION_USERS_SHOWN,
    Mention,
    Message,
    MessageEdit,
    MessageKind,
    Reaction,
)
from .search import cjk_terms

logger = logging.getLogger(__name__)

HISTORY_MAX_LIMIT = 200
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
REPLY_EXCERPT_CHARS = 100
# @name, not preceded by a word character or @ (so e-mail addresses are not mentions). Usernames may hold
# letters, digits and . + - _ (and @, which a mention cannot: "@a@b" mentions "a").
MENTION_RE = re.compile(r"(?<![\w@])@([\w.+\-]{1,150})")
MAX_MENTIONS_PER_MESSAGE = 50


class BodyEmpty(DomainError):
    code = "body_empty"
    default_detail = "The message has neither text nor attachments."


class BodyTooLong(DomainError):
    code = "body_too_long"
    default_detail = f"The message body is longer than {settings.MESSAGE_BODY_MAX_CHARS} characters."


class InvalidClientId(DomainError):
    code = "invalid_client_id"
    default_detail = "client_id must be 1-64 characters of letters, digits and - _ . :"


class MessageNotFound(NotFound):
    default_detail = "No such message in this room."


class MessageDeleted(DomainError):
    code = "message_deleted"
    http_status = 409
    default_detail = "The message was deleted."


class TooManyReactions(DomainError):
    code = "too_many_reactions"
    http_status = 409
    default_detail = f"A message keeps at most {MAX_DISTINCT_REACTIONS} different reactions."


class InvalidReply(DomainError):
    code = "invalid_reply"
    default_detail = "reply_to must name a message of this room that is not deleted."


class NotYourMessage(Forbidden):
    default_detail = "Only its sender may edit a message."


class MayNotDelete(Forbidden):
    default_detail = "Only its sender, the room's owner or staff may delete a message."


class NotAChatMessage(Forbidden):
    default_detail = "Join and leave notices cannot be changed."


class _NoChange(Exception):
    """Raised inside a change's transaction when the change is already in effect: roll back, free the seq."""


@dataclass(frozen=True)
class SendResult:
    message: dict[str, Any]  # the contract's Message
    created: bool  # False: the client_id was seen before and nothing new was stored


def reply_summary(original: Message) -> dict[str, Any]:
    """The contract's reply_to: the original as it is when this is called (a frame: as it was then)."""
    deleted = original.deleted_at is not None
    return {
        "id": original.pk,
        "seq": original.seq,
        "sender": original.sender.as_public_dict() if original.sender is not None else None,
        "excerpt": "" if deleted else original.body[:REPLY_EXCERPT_CHARS],
        "deleted": deleted,
    }


def message_to_dict(message: Message) -> dict[str, Any]:
    """The contract's Message, the same for every reader. Load `sender`, `reply_to` and `reply_to__sender`
    with the message (select_related, or assigned when it was made) so that this makes no query.

    A deleted message is a tombstone here, whatever the row still holds."""
    deleted = message.deleted_at is not None
    return {
        "id": message.pk,
        "room": message.room_id,
        "seq": message.seq,
        "client_id": message.client_id,
        "kind": message.kind,
        "sender": message.sender.as_public_dict() if message.sender is not None else None,
        "body": "" if deleted else message.body,
        "created_at": message.created_at.isoformat(),
        "edited_at": message.edited_at.isoformat() if message.edited_at is not None else None,
        "deleted_at": message.deleted_at.isoformat() if deleted else None,  # type: ignore[union-attr]
        "reply_to": reply_summary(message.reply_to) if message.reply_to is not None else None,
        "reactions": [] if deleted else message.reactions,
        "mentions": [] if deleted else message.mentions,
        "attachments": [] if deleted else with_links(message.attachments),  # fresh signed urls at every read
    }


MESSAGE_RELATIONS = ("sender", "reply_to", "reply_to__sender")


def messages_with_relations():  # type: ignore[no-untyped-def]
    return Message.objects.select_related(*MESSAGE_RELATIONS)


def clean_body(body: Any, *, may_be_empty: bool = False) -> str:
    """The trimmed text. Empty is refused unless the message carries attachments (`may_be_empty`): a
    picture shared without a caption is a message, a message of nothing is not. An absent body (None) is
    an empty one."""
    if body is None:
        body = ""
    if not isinstance(body, str):
        raise InvalidInput(fields={"body": ["Must be a string."]})
    body = body.strip()
    if not body and not may_be_empty:
        raise BodyEmpty()
    if len(body) > settings.MESSAGE_BODY_MAX_CHARS:
        raise BodyTooLong()
    if "\x00" in body:  # PostgreSQL text cannot hold NUL: a clear refusal, not a database error frame
        raise InvalidInput(fields={"body": ["Null characters are not allowed."]})
    return body


def clean_client_id(client_id: Any) -> str:
    if not isinstance(client_id, str) or not CLIENT_ID_RE.fullmatch(client_id):
        raise InvalidClientId()
    return client_id


def clean_message_id(value: Any) -> int:
    """A message id from a path or a frame; anything that cannot be one is simply not found."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise MessageNotFound()
    return value


def clean_reply_to(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise InvalidReply()
    return value


def mentioned_members(room_id: int, body: str, author_id: int | None, message_seq: int | None = None) -> list[int]:
    """Ids of the room's active members named as @username in `body`, in order of first mention. With the
    seq of an existing message (an edit): only members who may read it (history visibility)."""
    names: list[str] = []
    for match in MENTION_RE.finditer(body):
        name = match.group(1)
        for candidate in (name, name.rstrip(".-+")):  # "@bob." at the end of a sentence mentions bob
            if candidate and candidate not in names:
                names.append(candidate)
        if len(names) >= 2 * MAX_MENTIONS_PER_MESSAGE:
            break
    if not names:
        return []
    members = Membership.objects.active().filter(room_id=room_id, user__username__in=names).exclude(user_id=author_id)
    if message_seq is not None:
        members = members.exclude(room__history_visibility=HistoryVisibility.SINCE_JOIN, visible_after_seq__gte=message_seq)
    found = dict(members.values_list("user__username", "user_id"))
    ordered: list[int] = []
    for name in names:
        user_id = found.get(name)
        if user_id is not None and user_id not in ordered:
            ordered.append(user_id)
    return ordered[:MAX_MENTIONS_PER_MESSAGE]


def _notify_mentioned(room_id: int, user_ids: list[int], payload: dict[str, Any]) -> None:
    """A `mention` frame on every socket of each newly mentioned user, after commit."""
    frame = mention_frame(room_id, payload)
    for user_id in user_ids:
        publish_user_frame(user_id, frame)


def _store(
    room_id: int,
    sender: User | None,
    kind: str,
    client_id: str,
    body: str,
    at: datetime,
    reply_to_id: int | None = None,
    attachment_ids: list[int] | None = None,
) -> Message:
    taken = take_seq(room_id, sender.pk if sender is not None and kind == MessageKind.TALK else None)
    seq = taken.seq
    original = None
    if reply_to_id is not None:
        # Read under the room row's lock, which a deletion of the original also takes: it cannot vanish now.
        # A reply may only quote what its sender may read (the floor the seq UPDATE returned).
        original = (
            Message.objects.select_related("sender")
            .filter(
                pk=reply_to_id, room_id=room_id, kind=MessageKind.TALK, deleted_at__isnull=True, seq__gt=taken.floor
            )
            .first()
        )
        if original is None:
            raise InvalidReply()
    mentions = mentioned_members(room_id, body, sender.pk if sender else None) if kind == MessageKind.TALK else []
    files = pending_attachments(room_id, sender.pk, attachment_ids) if attachment_ids and sender is not None else []
    message = Message.objects.create(
        room_id=room_id,
        seq=seq,
        client_id=client_id,
        kind=kind,
        sender=sender,
        body=body,
        created_at=at,
        reply_to=original,
        mentions=mentions,
        search_terms=cjk_terms(body),
        attachments=[attachment_summary(a) for a in files],
    )
    bind_attachments(files, message)
    if mentions:
        Mention.objects.bulk_create([Mention(message=message, room_id=room_id, user_id=u, seq=seq) for u in mentions])
    payload = message_to_dict(message)
    if original is not None:
        # The frame and the event are the same bytes for every reader: none may quote what a member of a
        # "since_join" room may not read. Reads made for one member show the quote where they may see it.
        payload = _for_reader(payload, _shared_floor(room_id))
    record_event("message.created", room_id=room_id, data=without_links(payload), occurred_at=at)
    publish_room_event(room_id, seq, message_frame(payload), sent_at=at.timestamp())
    if mentions:
        _notify_mentioned(room_id, mentions, payload)
    return message


def _shared_floor(room_id: int) -> int:
    """The highest history floor among the room's active members: what a frame, which every member
    receives, may not quote (0 in a room that shows all history)."""
    found = (
        Membership.objects.active()
        .filter(room_id=room_id, room__history_visibility=HistoryVisibility.SINCE_JOIN)
        .aggregate(floor=Max("visible_after_seq"))["floor"]
    )
    return found or 0


def _hidden_reply(reply_to: dict[str, Any]) -> dict[str, Any]:
    """A reply's summary of an original its reader may not see: its id and seq, nothing of its content."""
    return {**reply_to, "sender": None, "excerpt": ""}


def _for_reader(payload: dict[str, Any], floor: int) -> dict[str, Any]:
    """The Message as a reader with this history floor may see it (only a quoted original can be hidden)."""
    reply_to = payload["reply_to"]
    if floor and reply_to is not None and reply_to["seq"] <= floor:
        return {**payload, "reply_to": _hidden_reply(reply_to)}
    return payload


# Compiled once (core.compiled): the ORM built this query, joins and all, anew for every send; the row is
# almost never there.
_EXISTING_SEND = CompiledQuery(
    lambda room_id, sender_id, client_id: messages_with_relations().filter(
        room_id=room_id, sender_id=sender_id, client_id=client_id
    ),
    room_id=int,
    sender_id=int,
    client_id=str,
)


def _existing_send(room_id: int, sender: User, client_id: str) -> Message | None:
    """The message an earlier send of this client_id stored, if any."""
    return _EXISTING_SEND.first_object(room_id=room_id, sender_id=sender.pk, client_id=client_id)  # type: ignore[return-value]


def send_message(
    *, room_id: int, sender: User, client_id: Any, body: Any, reply_to: Any = None, attachments: Any = None
) -> SendResult:
    """Store a TALK message once per (room, sender, client_id) and publish it after commit."""
    client_id = clean_client_id(client_id)
    attachment_ids = clean_attachment_ids(attachments)
    body = clean_body(body, may_be_empty=bool(attachment_ids))
    reply_to_id = clean_reply_to(reply_to)
    existing = _existing_send(room_id, sender, client_id)
    if existing is not None:
        return SendResult(message=message_to_dict(existing), created=False)
    if dm_send_blocked(room_id):
        raise Blocked()
    try:
        with transaction.atomic():
            message = _store(
                room_id,
                sender,
                MessageKind.TALK,
                client_id,
                body,
                timezone.now(),
                reply_to_id,
                attachment_ids=attachment_ids,
            )
    except IntegrityError:
        # A concurrent send of the same client_id won the race; ours rolled back (and gave its seq back).
        existing = _existing_send(room_id, sender, client_id)
        if existing is None:
            raise
        return SendResult(message=message_to_dict(existing), created=False)
    return SendResult(message=message_to_dict(message), created=True)


# --- changes -------------------------------------------------------------------------------------------
_MESSAGE_IN_ROOM = CompiledQuery(
    lambda message_id, room_id: messages_with_relations().filter(pk=message_id, room_id=room_id),
    message_id=int,
    room_id=int,
)


def _message_in_room(room_id: int, message_id: int) -> Message:
    """The message a change applies to, with its relations. Compiled once: building this three-join query
    anew was about half of what an edit or a reaction cost the server."""
    message = _MESSAGE_IN_ROOM.first_object(message_id=message_id, room_id=room_id)
    if message is None:
        raise MessageNotFound()
    return message  # type: ignore[return-value]


def _record_change(event_type: str, message: Message, actor: User, at: datetime, **extra: Any) -> dict[str, Any]:
    """Save nothing; emit the change that the caller saved: outbox row, then the frame after commit."""
    assert message.last_change_seq is not None
    payload = message_to_dict(message)
    if payload["reply_to"] is not None:
        payload = _for_reader(payload, _shared_floor(message.room_id))  # a frame: see _store
    data = {"seq": message.last_change_seq, "message": without_links(payload), "by": actor.as_public_dict(), **extra}
    record_event(event_type, room_id=message.room_id, data=data, occurred_at=at)
    publish_room_event(
        message.room_id, message.last_change_seq, message_updated_frame(message.last_change_seq, payload),
        sent_at=at.timestamp(), visible_seq=message.seq,  # sockets whose member may not read it drop it
    )
    return payload


def _change(room_id: int, message_id: Any, actor: User, apply: Any, *, member_only: bool = True) -> dict[str, Any]:
    """The frame of every change: take the seq (room lock, membership and the actor's history floor in the
    same UPDATE), load the message, `apply` it.

    `apply(message, seq, at)` saves and emits, returns the new Message, or raises _NoChange."""
    message_id = clean_message_id(message_id)
    if not actor.is_authenticated:
        require_member(room_id, actor)  # refuses, as it refuses every non-member
    # Staff moderate rooms they are not in (and see all of their history): no membership, no floor.
    member_id = None if not member_only and actor.is_staff else actor.pk
    try:
        with transaction.atomic():
            taken = take_seq(room_id, member_id)
            message = _message_in_room(room_id, message_id)
            if message.seq <= taken.floor:
                raise MessageNotFound()  # from before the actor's join, in a room that hides it
            return apply(message, taken.seq, timezone.now())
    except _NoChange:
        return message_to_dict(_message_in_room(room_id, message_id))


def edit_message(*, room_id: int, message_id: Any, actor: User, body: Any) -> dict[str, Any]:
    """Its sender replaces a TALK message's body; the old body goes to the edit history (staff, admin). A
    message that carries attachments may lose its text; one without keeps some (body_empty)."""
    body = clean_body(body, may_be_empty=True)

    def apply(message: Message, seq: int, at: datetime) -> dict[str, Any]:
        if message.kind != MessageKind.TALK:
            raise NotAChatMessage()
        if message.sender_id != actor.pk:
            raise NotYourMessage()
        if message.deleted_at is not None:
            raise MessageDeleted()
        if not body and not message.attachments:
            raise BodyEmpty()
        if message.body == body:
            raise _NoChange()
        MessageEdit.objects.create(message=message, seq=seq, previous_body=message.body, edited_at=at)
        before = set(message.mentions)
        mentions = mentioned_members(room_id, body, actor.pk, message_seq=message.seq)
        if before - set(mentions):
            Mention.objects.filter(message=message).exclude(user_id__in=mentions).delete()
        added = [u for u in mentions if u not in before]
        if added:
            Mention.objects.bulk_create([Mention(message=message, room_id=room_id, user_id=u, seq=message.seq) for u in added])
        message.body, message.edited_at, message.mentions, message.last_change_seq = body, at, mentions, seq
        message.search_terms = cjk_terms(body)
        save_fields(message, ("body", "search_terms", "edited_at", "mentions", "last_change_seq"))
        payload = _record_change("message.edited", message, actor, at)
        _notify_mentioned(room_id, added, payload)
        return payload

    return _change(room_id, message_id, actor, apply)


# Where a stored event's data can hold a message's content: its creation and its changes carry the Message
# (`data`, `data.message`; content in "body"), replies quoting it and their changes a reply summary
# (`data.reply_to`, `data.message.reply_to`; content in "excerpt"). Outer paths first: _redacted_payload relies on it.
_CARRIERS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("data",), "body"),
    (("data", "message"), "body"),
    (("data", "reply_to"), "excerpt"),
    (("data", "message", "reply_to"), "excerpt"),
)
# What a deletion writes over each kind of carrier (a Message, a reply summary).
_REDACTIONS: dict[str, dict[str, Any]] = {
    "body": {"body": "", "reactions": [], "mentions": [], "attachments": []},
    "excerpt": {"excerpt": "", "deleted": True},
}


def _carrying_condition(message_id: int, vendor: str) -> PayloadSQL:
    """The stored events whose data can hold a message's content (_CARRIERS), matched in the database, so that
    a deletion rewrites those rows instead of reading the room's whole event history into Python (which made
    a deletion cost many times a send in a room with a long history)."""
    sql, as_param = _for_database(_CARRYING_SQL, vendor)
    return PayloadSQL(sql, [as_param(message_id)] * sql.count("%s"))


def _redacted_payload(message_id: int, vendor: str) -> PayloadSQL:
    """A stored event's payload with a deleted message's content removed wherever _CARRIERS put it, computed
    by the database in the UPDATE itself: the deletion reads no event row into Python (events.rewrite_events).
    Each carrier is rewritten when its id is the message's and it holds its marker key; the value merged in is
    the carrier as stored, which no earlier (outer) step changed: an outer step writes only its own node's
    content keys, never the "message" or "reply_to" key a later path goes through."""
    sql, as_param = _for_database(_REDACTED_SQL, vendor)
    return PayloadSQL(sql, [as_param(message_id)] * sql.count("%s"))


def _text_path(*keys: str) -> str:
    return "{" + ",".join(keys) + "}"


def _redaction_sql_postgresql() -> str:
    sql = "payload"
    for path, marker in _CARRIERS:
        node, key, node_id = _text_path(*path), _text_path(*path, marker), _text_path(*path, "id")
        patch = json.dumps(_REDACTIONS[marker])
        sql = (
            f"CASE WHEN payload #>> '{node_id}' = %s AND payload #> '{key}' IS NOT NULL"
            f" THEN jsonb_set({sql}, '{node}', (payload #> '{node}') || '{patch}'::jsonb) ELSE {sql} END"
        )
    return sql


def _redaction_sql_sqlite() -> str:
    sql = "payload"
    for path, marker in _CARRIERS:
        node = "$." + ".".join(path)
        values = ", ".join(f"'{node}.{k}', json('{json.dumps(v)}')" for k, v in _REDACTIONS[marker].items())
        sql = (
            f"CASE WHEN json_extract(payload, '{node}.id') = %s AND json_type(payload, '{node}.{marker}') IS NOT NULL"
            f" THEN json_set({sql}, {values}) ELSE {sql} END"
        )
    return sql


# Per database: the SQL and how the message id is written into each of its placeholders (the redaction nests
# each step in the next twice, so its placeholders are counted, not assumed). Changes
# and reactions are the only event types that carry a message ("message.*", "reaction.*").
_CHANGE_TYPES = "(event_type LIKE 'message.%%' OR event_type LIKE 'reaction.%%')"
_CARRYING_SQL: dict[str, tuple[str, Callable[[int], Any]]] = {
    "postgresql": (
        _CHANGE_TYPES + " AND (" + " OR ".join(f"payload #>> '{_text_path(*p, 'id')}' = %s" for p, _ in _CARRIERS) + ")",
        str,
    ),
    "sqlite": (
        _CHANGE_TYPES + " AND (" + " OR ".join(f"json_extract(payload, '$.{'.'.join(p)}.id') = %s" for p, _ in _CARRIERS) + ")",
        int,
    ),
}
_REDACTED_SQL: dict[str, tuple[str, Callable[[int], Any]]] = {
    "postgresql": (_redaction_sql_postgresql(), str),
    "sqlite": (_redaction_sql_sqlite(), int),
}


def _for_database(written: dict[str, Any], vendor: str) -> Any:
    if vendor not in written:
        raise NotSupportedError(f"No redaction of stored events written for {vendor}.")
    return written[vendor]


def _remove_changed_rows(message: Message) -> None:
    """A deleted message's edit history, reactions and mentions, in one statement on PostgreSQL (a DELETE per
    table in a WITH), one per table elsewhere. The message's own summaries say which rows exist (they are
    kept together under the room's lock): a plain message's deletion costs no query for what it never had."""
    tables = [
        model._meta.db_table
        for model, present in (
            (MessageEdit, message.edited_at is not None),
            (Reaction, bool(message.reactions)),
            (Mention, bool(message.mentions)),
        )
        if present
    ]
    if not tables:
        return
    quote = connection.ops.quote_name
    deletes = [f"DELETE FROM {quote(table)} WHERE message_id = %s" for table in tables]  # noqa: S608 - our tables
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            ctes = ", ".join(f"removed_{i} AS ({sql})" for i, sql in enumerate(deletes[:-1]))
            cursor.execute((f"WITH {ctes} " if ctes else "") + deletes[-1], [message.pk] * len(deletes))
        else:
            for sql in deletes:
                cursor.execute(sql, [message.pk])


def delete_message(*, room_id: int, message_id: Any, actor: User) -> dict[str, Any]:
    """Its sender, the room's owner or staff turn a TALK message into a tombstone: the body, its edit
    history, reactions and mentions are removed, also from the stored events that carried them."""

    def apply(message: Message, seq: int, at: datetime) -> dict[str, Any]:
        if message.kind != MessageKind.TALK:
            raise NotAChatMessage()
        if message.sender_id != actor.pk and not may_moderate(Room.objects.get(pk=room_id), actor):
            raise MayNotDelete()
        if message.deleted_at is not None:
            raise _NoChange()
        _remove_changed_rows(message)
        if message.attachments:
            remove_message_attachments(message)  # the files go after commit
        message.body, message.search_terms, message.deleted_at, message.last_change_seq = "", "", at, seq
        message.reactions, message.mentions, message.attachments = [], [], []
        save_fields(
            message, ("body", "search_terms", "deleted_at", "reactions", "mentions", "attachments", "last_change_seq")
        )
        # Every such event was written since the message was created: that bound narrows the scan.
        vendor = connection.vendor
        rewrite_events(
            room_id, message.created_at, _carrying_condition(message.pk, vendor), _redacted_payload(message.pk, vendor)
        )
        return _record_change("message.deleted", message, actor, at)

    return _change(room_id, message_id, actor, apply, member_only=False)


def _has_reacted(entry: dict[str, Any] | None, user: User, rows: Callable[[], Any]) -> bool:
    """Whether `user` reacted with the emoji of this summary entry (None: nobody did). The summary is kept
    with the rows under the room's lock and names the first MAX_REACTION_USERS_SHOWN reactors (by id), so it
    answers without a query unless more users reacted than it names and `user` is not among them: then the
    rows `rows()` returns (the user's reaction with the emoji) do."""
    if entry is None:
        return False
    if user.pk in entry["users"]:
        return True
    return entry["count"] > len(entry["users"]) and rows().exists()


def set_reaction(*, room_id: int, message_id: Any, actor: User, emoji: Any, on: Any) -> dict[str, Any]:
    """Add (on=True) or remove the caller's reaction with `emoji`; the summary on the message follows."""
    emoji = clean_emoji(emoji)
    if not isinstance(on, bool):
        raise InvalidInput(fields={"on": ["Must be true or false."]})

    def apply(message: Message, seq: int, at: datetime) -> dict[str, Any]:
        if message.kind != MessageKind.TALK:
            raise NotAChatMessage()
        if message.deleted_at is not None:
            raise MessageDeleted()
        summary = [dict(entry) for entry in message.reactions]
        entry = next((e for e in summary if e["emoji"] == emoji), None)
        def mine() -> Any:  # built only when needed: building the QuerySet cost a reaction as much as a query
            return Reaction.objects.filter(message=message, user=actor, emoji=emoji)

        if on == _has_reacted(entry, actor, mine):
            raise _NoChange()
        if on:
            if entry is None:
                if len(summary) >= MAX_DISTINCT_REACTIONS:
                    raise TooManyReactions()
                entry = {"emoji": emoji, "count": 0, "users": []}
                summary.append(entry)
            Reaction.objects.create(message=message, user=actor, emoji=emoji, created_at=at)
            entry["count"] += 1
            if len(entry["users"]) < MAX_REACTION_USERS_SHOWN:
                entry["users"] = [*entry["users"], actor.pk]
        else:
            assert entry is not None  # the summary is kept with the rows, under the room's lock
            mine().delete()
            entry["count"] -= 1
            entry["users"] = [u for u in entry["users"] if u != actor.pk]
            if entry["count"] <= 0:
                summary.remove(entry)
            elif len(entry["users"]) < min(entry["count"], MAX_REACTION_USERS_SHOWN):
                entry["users"] = list(
                    Reaction.objects.filter(message=message, emoji=emoji)
                    .order_by("id")
                    .values_list("user_id", flat=True)[:MAX_REACTION_USERS_SHOWN]
                )
        message.reactions, message.last_change_seq = summary, seq
        save_fields(message, ("reactions", "last_change_seq"))
        return _record_change(
            "reaction.added" if on else "reaction.removed", message, actor, at, emoji=emoji, user=actor.as_public_dict()
        )

    return _change(room_id, message_id, actor, apply)


def reactions_of(user: User, message_ids: list[int]) -> dict[int, set[str]]:
    """The emoji `user` reacted with, per message: what a per-caller read adds as `me` to each reaction."""
    mine: dict[int, set[str]] = {}
    if message_ids:
        for message_id, emoji in Reaction.objects.filter(user=user, message_id__in=message_ids).values_list(
            "message_id", "emoji"
        ):
            mine.setdefault(message_id, set()).add(emoji)
    return mine


def with_my_reactions(messages: list[dict[str, Any]], user: User) -> list[dict[str, Any]]:
    """Per-caller reads (REST, GraphQL) mark the caller's own reactions with `me` (frames never do).

    Returns copies: a change's Message dict is also the frame published after commit (possibly encoded a
    moment later on the serving loop), so marking it in place once leaked `me` into every member's frame."""
    mine = reactions_of(user, [m["id"] for m in messages if m["reactions"]])
    marked = []
    for message in messages:
        if message["reactions"]:
            emojis = mine.get(message["id"], set())
            message = {**message, "reactions": [{**r, "me": r["emoji"] in emojis} for r in message["reactions"]]}
        marked.append(message)
    return marked


def post_membership_message(*, room_id: int, user: User, kind: str, at: datetime) -> Message:
    """ENTER/LEAVE, written inside the membership change's transaction (see messaging.receivers)."""
    return _store(room_id, user, kind, f"{kind.lower()}-{uuid.uuid4()}", "", at)


def room_last_seq(room_id: int, using: str = DEFAULT_DB_ALIAS) -> int:
    """The room's newest seq on the primary, or as far as the database `using` (the replica) has applied."""
    return Room.objects.using(using).filter(pk=room_id).values_list("last_seq", flat=True).first() or 0


def _replica_and_applied(room_id: int) -> tuple[str, int] | None:
    """The replica and how far it has applied the room; None without a replica, or when it does not answer
    (a replica that is down must not take history down: the primary serves the read)."""
    replica = replica_alias()
    if replica is None:
        return None
    try:
        return replica, room_last_seq(room_id, using=replica)
    except DatabaseError:
        logger.warning("the read replica does not answer; reading room %s on the primary", room_id)
        return None


def _changed_after(room_id: int, applied: int) -> dict[int, Message]:
    """The room's messages changed after the replica's copy of the room (last_change_seq > applied), from the
    primary: usually none, one index range scan. A row read from the replica is shown as its entry here when
    it has one, and quotes the entry of the message it replies to, so a lagging replica never shows a state
    the primary has replaced (a deleted body must not travel, not even to be corrected a frame later)."""
    return {m.pk: m for m in messages_with_relations().filter(room_id=room_id, last_change_seq__gt=applied)}


def _as_current(message: Message, changed_after: dict[int, Message]) -> Message:
    message = changed_after.get(message.pk, message)
    if message.reply_to_id in changed_after:
        message.reply_to = changed_after[message.reply_to_id]
    return message


def _seq_page(query: Any, *, newest_first: bool, take: int, room_id: int) -> list[Any]:
    """`take` rows of a seq-ordered query of one room: those up to what the replica has applied from the
    replica, the rest from the primary (all from the primary without a replica)."""
    order = "-seq" if newest_first else "seq"
    on_replica = _replica_and_applied(room_id)
    if on_replica is None:
        return list(query.order_by(order)[:take])
    replica, applied = on_replica
    older, newer = query.using(replica).filter(seq__lte=applied), query.filter(seq__gt=applied)
    first, then = (newer, older) if newest_first else (older, newer)
    rows = list(first.order_by(order)[:take])
    if len(rows) < take:
        rows += list(then.order_by(order)[: take - len(rows)])
    changed_after = _changed_after(room_id, applied)
    return [_as_current(m, changed_after) for m in rows]


def history(
    *,
    room_id: int,
    user: User,
    after_seq: int | None = None,
    before_seq: int | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], bool]:
    """Members-only history of messages in their current state, ascending by seq. With before_seq alone,
    the newest page below it. The membership check reads the primary (a member who just left reads
    nothing); the page may come from the replica (_seq_page)."""
    floor = history_floor(require_member(room_id, user))
    limit = max(1, min(int(limit), HISTORY_MAX_LIMIT))
    query = messages_with_relations().filter(room_id=room_id, seq__gt=floor)
    if after_seq is not None:
        query = query.filter(seq__gt=after_seq)
    if before_seq is not None:
        query = query.filter(seq__lt=before_seq)
    if since is not None:
        query = query.filter(created_at__gte=since)
    newest_first = before_seq is not None and after_seq is None and since is None
    page = _seq_page(query, newest_first=newest_first, take=limit + 1, room_id=room_id)
    has_more = len(page) > limit
    page = list(reversed(page[:limit])) if newest_first else page[:limit]
    return with_my_reactions([_for_reader(message_to_dict(m), floor) for m in page], user), has_more


def _room_events(
    room_id: int,
    after_seq: int,
    up_to_seq: int | None = None,
    limit: int | None = None,
    floor: int = 0,
    quote_floor: int | None = None,
    using: str = DEFAULT_DB_ALIAS,
    changed_after: dict[int, Message] | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    """The room's events after `after_seq` as (seq, frame), ascending: each message at its seq, each
    changed message once more at the seq of its latest change, both in the message's current state, and
    each moderation event (rooms.models.RoomEvent) at its seq. Nothing about a message at or below `floor`
    (a member's history floor), nor a moderation event there; replies quote nothing at or below
    `quote_floor` (by default `floor`).

    Three index range scans, (room, seq), (room, last_change_seq) and the room events' (room, seq), merged;
    with `limit`, each scan stops at `limit` rows, which is enough for the merged first `limit` events.

    `changed_after` (a read of the replica: `_changed_after`): messages to show in their state on the
    primary; their changes up to the replica's copy are left out here (superseded by later ones).
    """
    start = max(after_seq, floor)
    created = messages_with_relations().using(using).filter(room_id=room_id, seq__gt=start)
    changed = (
        messages_with_relations().using(using).filter(room_id=room_id, last_change_seq__gt=after_seq, seq__gt=floor)
    )
    others = RoomEvent.objects.using(using).filter(room_id=room_id, seq__gt=start)
    if up_to_seq is not None:
        created = created.filter(seq__lte=up_to_seq)
        changed = changed.filter(last_change_seq__lte=up_to_seq)
        others = others.filter(seq__lte=up_to_seq)
    created = created.order_by("seq")
    changed = changed.order_by("last_change_seq")
    others = others.order_by("seq")
    if changed_after:
        changed = changed.exclude(pk__in=list(changed_after))
    if limit is not None:
        created, changed, others = created[:limit], changed[:limit], others[:limit]
    current = changed_after or {}
    created = [_as_current(m, current) for m in created]
    changed = [_as_current(m, current) for m in changed]
    payloads: dict[int, dict[str, Any]] = {}

    def payload(message: Message) -> dict[str, Any]:
        if message.pk not in payloads:
            payloads[message.pk] = _for_reader(message_to_dict(message), floor if quote_floor is None else quote_floor)
        return payloads[message.pk]

    events = [(m.seq, message_frame(payload(m))) for m in created]
    events += [
        (m.last_change_seq, message_updated_frame(m.last_change_seq, payload(m)))  # type: ignore[arg-type]
        for m in changed
    ]
    events += [(event.seq, event.frame()) for event in others]
    events.sort(key=lambda event: event[0])
    return events[:limit] if limit is not None else events


def replay_page(
    *, room_id: int, after_seq: int, limit: int, floor: int = 0, up_to_seq: int | None = None
) -> list[tuple[int, dict[str, Any]]]:
    """One page of a resume as (seq, frame), for a socket whose membership was checked; `floor` is its
    member's history floor (rooms.models.history_floor).

    `up_to_seq` (the room's last_seq on the primary when the resume began: `room_last_seq`) bounds every
    scan of the page, so the three scans agree on one committed range even while new events commit, and a
    page shorter than `limit` means the resume has everything up to it. The part of the range the replica
    has applied is read there, the rest from the primary."""
    on_replica = _replica_and_applied(room_id) if up_to_seq is not None else None
    if on_replica is not None and up_to_seq is not None:
        replica, applied = on_replica[0], min(on_replica[1], up_to_seq)
        if applied > after_seq:
            changed_after = _changed_after(room_id, applied)
            events = _room_events(
                room_id,
                after_seq,
                up_to_seq=applied,
                limit=limit,
                floor=floor,
                using=replica,
                changed_after=changed_after,
            )
            if len(events) == limit or applied == up_to_seq:
                return events
            # The replica stops short of up_to_seq: the rest of the page from the primary.
            after_seq, limit = applied, limit - len(events)
            return events + _room_events(room_id, after_seq, up_to_seq=up_to_seq, limit=limit, floor=floor)
    return _room_events(room_id, after_seq, up_to_seq=up_to_seq, limit=limit, floor=floor)


def frames_between(*, room_id: int, after_seq: int, up_to_seq: int) -> list[tuple[int, dict[str, Any]]]:
    """The room's events with after_seq < seq <= up_to_seq as (seq, frame): how a live stream fills a gap.
    Always on the primary: the stream settles every seq of the range that this does not return.
    A seq in the range that is not returned was a change superseded by a later one (or went with its row).
    The stream serves every member: each chat socket drops what its member may not read (visible_seq)."""
    return _room_events(room_id, after_seq, up_to_seq=up_to_seq, quote_floor=_shared_floor(room_id))


def _unread_messages(room_id: Any, user_id: int, last_read_seq: Any):  # type: ignore[no-untyped-def]
    return (
        Message.objects.filter(room_id=room_id, seq__gt=last_read_seq, kind=MessageKind.TALK, deleted_at__isnull=True)
        .exclude(sender_id=user_id)
    )


def unread_count(*, room_id: int, user_id: int, last_read_seq: int) -> int:
    return _unread_messages(room_id, user_id, last_read_seq).count()


def mention_count(*, room_id: int, user_id: int, last_read_seq: int) -> int:
    """Unread messages that mention the user (a deleted message's mentions are gone with it)."""
    return Mention.objects.filter(room_id=room_id, user_id=user_id, seq__gt=last_read_seq).count()


@dataclass(frozen=True)
class ReadPosition:
    last_read_seq: int
    unread: int
    mentions: int


def mark_read(*, room_id: int, user: User, seq: Any) -> ReadPosition:
    """Move the read position forward (never back, never past the room's newest seq)."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise InvalidInput(fields={"seq": ["Must be a non-negative integer."]})
    membership = require_member(room_id, user)
    last_seq = room_last_seq(room_id)
    target = min(seq, last_seq)
    moved = Membership.objects.filter(pk=membership.pk, last_read_seq__lt=target).update(last_read_seq=target)
    last_read = max(membership.last_read_seq, target)
    if moved:
        # Every socket of the room (the reader's other tabs included) sees the new position, whichever
        # edge moved it. Read positions are not mirrored to Kafka: they are per-user view state, written
        # about once per message per reader.
        publish_room_frame(room_id, read_frame(user.as_public_dict(), last_read))
    return ReadPosition(
        last_read_seq=last_read,
        unread=unread_count(room_id=room_id, user_id=user.pk, last_read_seq=last_read),
        mentions=mention_count(room_id=room_id, user_id=user.pk, last_read_seq=last_read),
    )


def with_activity_counts(memberships):  # type: ignore[no-untyped-def]
    """Annotate membership rows with `unread` and `mentions`, each for the row's own user and read position:
    one statement, so a row's counts and its room's last_seq come from one snapshot (the user socket relies
    on that, messaging.activity)."""
    unread = (
        _unread_messages(OuterRef("room_id"), OuterRef("user_id"), OuterRef("last_read_seq"))
        .order_by()
        .values("room_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    mentions = (
        Mention.objects.filter(
            room_id=OuterRef("room_id"), user_id=OuterRef("user_id"), seq__gt=OuterRef("last_read_seq")
        )
        .order_by()
        .values("room_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return memberships.annotate(unread=Coalesce(Subquery(unread), 0), mentions=Coalesce(Subquery(mentions), 0))


def my_rooms_queryset(user: User):  # type: ignore[no-untyped-def]
    """The caller's active memberships with unread and mention counts and the last message id, in constant
    queries."""
    last_message = Message.objects.filter(room_id=OuterRef("room_id")).order_by("-seq").values("id")[:1]
    return (
        with_activity_counts(Membership.objects.active().filter(user=user))
        .select_related("room", "room__owner")
        .annotate(last_message_id=Subquery(last_message))
        .order_by("-room__last_seq", "-room_id")
    )


def search_results(hits: list[tuple[int, str]], user: User) -> list[dict[str, Any]]:
    """A page of search hits (message id, snippet) as the contract's results, in the hits' order."""
    messages = messages_with_relations().select_related("room").in_bulk([message_id for message_id, _ in hits])
    results = []
    for message_id, snippet in hits:
        message = messages.get(message_id)
        if message is None:
            continue  # deleted with its room between the two reads
        room = message.room
        results.append(
            {
                "message": message_to_dict(message),
                "room": {"id": room.pk, "title": room.title, "kind": getattr(room, "kind", "room")},
                "snippet": snippet,
            }
        )
    for result, message in zip(results, with_my_reactions([r["message"] for r in results], user), strict=True):
        result["message"] = message
    return results


def last_messages_by_id(ids: list[int]) -> dict[int, dict[str, Any]]:
    messages = messages_with_relations().filter(id__in=[i for i in ids if i])
    return {m.pk: message_to_dict(m) for m in messages}
