"""Bulk data for load: users, rooms, memberships and messages, written the fast way and kept consistent.

Why not the services: `join_room` and `send_message` take a row lock, write an outbox event and publish per
call, which is right for live traffic and far too slow for a million rows. Here rows are written in bulk
(COPY on PostgreSQL, bulk_create elsewhere) while the invariants the services keep are kept by construction:
- personnel = the room's active memberships (recomputed by one UPDATE after memberships are written);
- seq is gapless per room: a room's new messages take last_seq+1.. under the room row's lock, and last_seq
  is moved to the highest seq in the same transaction.
Seeded data writes no outbox events (nothing of it is mirrored to Kafka) and no ENTER messages.

Every count is a target, so seeding is idempotent: users, rooms and memberships are found by their names
and pairs and only the missing ones are created; a room's messages are topped up to its share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.db.models import Count, Max, Min, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from psycopg.types.json import Jsonb

from accounts.models import User
from messaging.models import Message, MessageEdit, MessageKind, Reaction
from messaging.search import cjk_terms
from rooms.models import MAX_MAX_PERSONNEL, MIN_MAX_PERSONNEL, Membership, Room

Progress = Callable[[str, int, int], None]  # (stage, done, total)

BATCH = 5000
ROOMS_PER_TRANSACTION = 50  # ensure_messages locks this many room rows at a time
MESSAGE_SPACING = timedelta(seconds=30)  # seeded history: one message every 30 s, the newest now
BODIES = (
    "Good morning everyone!",
    "Did anyone look at the numbers from yesterday?",
    "I'll be five minutes late, start without me.",
    "That is a great idea, let's try it this week.",
    "Here is the link I promised earlier.",
    "Lunch at noon? The usual place.",
    "I pushed the fix, can someone review it?",
    "Thanks, that solved it.",
    "회의 주소는 본관 3층 회의실입니다.",
    "내일 점심은 같이 먹을까요?",
    "방금 올린 수정 사항 확인 부탁드려요.",
    "좋은 아침입니다, 모두들!",
)


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def username_for(prefix: str, index: int) -> str:
    return f"{prefix}{index:06d}"


def title_for(prefix: str, index: int) -> str:
    return f"{prefix}{index:04d}"


def ensure_users(prefix: str, count: int, password: str, progress: Progress = _no_progress) -> tuple[list[int], int]:
    """Users prefix000001..: (their ids in index order, how many were created). The password is hashed
    once and the hash shared, so that seeding costs one PBKDF2 run, not one per user."""
    names = [username_for(prefix, i) for i in range(1, count + 1)]
    existing = dict(User.objects.filter(username__startswith=prefix).values_list("username", "id"))
    missing = [name for name in names if name not in existing]
    created = 0
    if missing:
        password_hash = make_password(password)
        for start in range(0, len(missing), BATCH):
            chunk = missing[start : start + BATCH]
            User.objects.bulk_create(
                [User(username=name, nickname=f"Load {name[len(prefix) :]}", password=password_hash) for name in chunk],
                ignore_conflicts=True,
            )
            created += len(chunk)
            progress("users", created, len(missing))
        existing = dict(User.objects.filter(username__startswith=prefix).values_list("username", "id"))
    return [existing[name] for name in names], created


def ensure_rooms(prefix: str, count: int, max_personnel: int, owner_ids: Sequence[int]) -> tuple[list[int], int]:
    """Rooms prefix0001..: (ids in index order, how many were created)."""
    max_personnel = max(MIN_MAX_PERSONNEL, min(MAX_MAX_PERSONNEL, max_personnel))
    titles = [title_for(prefix, j) for j in range(1, count + 1)]
    existing = dict(Room.objects.filter(title__startswith=prefix).values_list("title", "id"))
    missing = [(j, t) for j, t in enumerate(titles) if t not in existing]
    for start in range(0, len(missing), BATCH):
        Room.objects.bulk_create(
            [
                Room(
                    title=t, owner_id=owner_ids[j % len(owner_ids)] if owner_ids else None, max_personnel=max_personnel
                )
                for j, t in missing[start : start + BATCH]
            ]
        )
    if missing:
        existing = dict(Room.objects.filter(title__startswith=prefix).values_list("title", "id"))
    return [existing[t] for t in titles], len(missing)


def members_of_room(room_index: int, user_ids: Sequence[int], per_room: int) -> list[int]:
    """A room's members, chosen deterministically (a run twice picks the same people): consecutive users
    starting at a stride, wrapping around, so every user ends up in about the same number of rooms."""
    if not user_ids:
        return []
    per_room = min(per_room, len(user_ids))
    start = (room_index * per_room) % len(user_ids)
    return [user_ids[(start + k) % len(user_ids)] for k in range(per_room)]


def ensure_memberships(
    room_ids: Sequence[int], user_ids: Sequence[int], per_room: int, progress: Progress = _no_progress
) -> int:
    """Active memberships for each room's members; then personnel = active memberships for these rooms."""
    now = timezone.now()
    written = 0
    pending: list[Membership] = []
    total = len(room_ids) * min(per_room, len(user_ids))
    for index, room_id in enumerate(room_ids):
        for user_id in members_of_room(index, user_ids, per_room):
            pending.append(Membership(room_id=room_id, user_id=user_id, is_active=True, joined_at=now))
        if len(pending) >= BATCH or index == len(room_ids) - 1:
            with transaction.atomic():
                Membership.objects.bulk_create(pending, ignore_conflicts=True)
                # A seeded member who had left is a member again.
                ids = {m.room_id for m in pending}
                Membership.objects.filter(
                    room_id__in=ids, user_id__in={m.user_id for m in pending}, is_active=False
                ).filter(_pairs_filter(pending)).update(is_active=True, joined_at=now)
            written += len(pending)
            pending = []
            progress("memberships", written, total)
    recount_personnel(room_ids)
    return written


def _pairs_filter(memberships: list[Membership]) -> Q:
    query = Q(pk__in=[])
    by_room: dict[int, list[int]] = {}
    for m in memberships:
        by_room.setdefault(m.room_id, []).append(m.user_id)
    for room_id, users in by_room.items():
        query |= Q(room_id=room_id, user_id__in=users)
    return query


def recount_personnel(room_ids: Sequence[int]) -> None:
    """personnel := count of active memberships, in one UPDATE per batch; max_personnel grows if needed."""
    active = (
        Membership.objects.filter(room_id=OuterRef("pk"), is_active=True)
        .order_by()
        .values("room_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    for start in range(0, len(room_ids), BATCH):
        chunk = list(room_ids[start : start + BATCH])
        with transaction.atomic():
            counts = dict(
                Room.objects.filter(pk__in=chunk).annotate(n=Coalesce(Subquery(active), 0)).values_list("pk", "n")
            )
            too_small = [pk for pk, n in counts.items() if n > 0]
            for pk in too_small:
                Room.objects.filter(pk=pk, max_personnel__lt=counts[pk]).update(max_personnel=counts[pk])
            Room.objects.filter(pk__in=chunk).update(personnel=Coalesce(Subquery(active), 0))


@dataclass(frozen=True)
class MessagePlan:
    room_id: int
    target: int  # the room should hold at least this many messages
    members: list[int]


def message_targets(total: int, room_count: int) -> list[int]:
    """Split `total` messages over the rooms: the first rooms get one more when it does not divide."""
    if room_count == 0:
        return []
    share, extra = divmod(total, room_count)
    return [share + (1 if j < extra else 0) for j in range(room_count)]


def ensure_messages(plans: Sequence[MessagePlan], progress: Progress = _no_progress) -> int:
    """Top each room up to its target with TALK messages; gapless seq, last_seq moved in the same transaction."""
    total_target = sum(p.target for p in plans)
    added = 0
    done = 0
    for start in range(0, len(plans), ROOMS_PER_TRANSACTION):
        chunk = [p for p in plans[start : start + ROOMS_PER_TRANSACTION] if p.members]
        if not chunk:
            continue
        with transaction.atomic():
            room_ids = [p.room_id for p in chunk]
            last_seqs = dict(
                Room.objects.select_for_update().filter(pk__in=room_ids).order_by("pk").values_list("pk", "last_seq")
            )
            counts = dict(
                Message.objects.filter(room_id__in=room_ids)
                .order_by()
                .values("room_id")
                .annotate(n=Count("id"))
                .values_list("room_id", "n")
            )
            rows: list[tuple[Any, ...]] = []
            new_last: dict[int, int] = {}
            now = timezone.now()
            for plan in chunk:
                missing = plan.target - counts.get(plan.room_id, 0)
                if missing <= 0:
                    continue
                first = last_seqs[plan.room_id] + 1
                for k in range(missing):
                    seq = first + k
                    sender = plan.members[(seq * 7919) % len(plan.members)]
                    created_at = now - MESSAGE_SPACING * (missing - k)
                    rows.append(
                        (
                            plan.room_id,
                            seq,
                            f"seed-{seq}",
                            MessageKind.TALK.value,
                            sender,
                            BODIES[seq % len(BODIES)],
                            created_at,
                            [],
                            [],
                            [],
                        )
                    )
                new_last[plan.room_id] = first + missing - 1
            _insert_messages(rows)
            for room_id, last_seq in new_last.items():
                Room.objects.filter(pk=room_id).update(last_seq=last_seq)
            added += len(rows)
        done += sum(p.target for p in chunk)
        progress("messages", min(done, total_target), total_target)
    return added


# reactions and mentions have no database default (Django's default=list lives in Python): COPY names them.
MESSAGE_COLUMNS = (
    "room_id", "seq", "client_id", "kind", "sender_id", "body", "created_at", "reactions", "mentions", "attachments"
)
# COPY bypasses the model's defaults: every JSON column is given, as JSON.
JSON_COLUMNS = {MESSAGE_COLUMNS.index(name) for name in ("reactions", "mentions", "attachments")}


def _insert_messages(rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    if connection.vendor == "postgresql":
        # COPY bypasses the model's defaults: the columns without a database default are given here.
        table = Message._meta.db_table
        columns = (*MESSAGE_COLUMNS, "search_terms")
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"  # noqa: S608
        body = MESSAGE_COLUMNS.index("body")
        with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row([*(Jsonb(v) if i in JSON_COLUMNS else v for i, v in enumerate(row)), cjk_terms(row[body])])
        return
    for start in range(0, len(rows), BATCH):
        Message.objects.bulk_create(
            [
                Message(
                    **dict(zip(MESSAGE_COLUMNS, row, strict=True)),
                    search_terms=cjk_terms(row[MESSAGE_COLUMNS.index("body")]),
                )
                for row in rows[start : start + BATCH]
            ]
        )


def delete_seeded(user_prefix: str, room_prefix: str) -> dict[str, int]:
    """--reset: the seeded rooms with their messages and memberships, then the seeded users.

    Messages and memberships go first in plain DELETEs: the ORM's cascade would load every row first."""
    room_ids = list(Room.objects.filter(title__startswith=room_prefix).values_list("id", flat=True))
    deleted = {"messages": 0, "memberships": 0, "rooms": 0, "users": 0}
    for start in range(0, len(room_ids), 500):
        chunk = room_ids[start : start + 500]
        with transaction.atomic():
            deleted["messages"] += Message.objects.filter(room_id__in=chunk)._raw_delete(connection.alias)
            deleted["memberships"] += Membership.objects.filter(room_id__in=chunk)._raw_delete(connection.alias)
            deleted["rooms"] += Room.objects.filter(pk__in=chunk).delete()[0]
    users = User.objects.filter(username__startswith=user_prefix)
    user_ids = list(users.values_list("id", flat=True))
    for start in range(0, len(user_ids), 2000):
        chunk = user_ids[start : start + 2000]
        with transaction.atomic():
            Membership.objects.filter(user_id__in=chunk)._raw_delete(connection.alias)
            deleted["users"] += User.objects.filter(pk__in=chunk).delete()[1].get(User._meta.label, 0)
    return deleted


def consistency_report(room_ids: Sequence[int]) -> dict[str, int]:
    """Rooms whose personnel != active memberships, whose seq has gaps, or whose last_seq != max(seq)."""
    stats = {
        row["room_id"]: row
        for row in Message.objects.filter(room_id__in=room_ids)
        .order_by()
        .values("room_id")
        .annotate(n=Count("id"), lo=Min("seq"), hi=Max("seq"))
    }
    active = dict(
        Membership.objects.filter(room_id__in=room_ids, is_active=True)
        .order_by()
        .values("room_id")
        .annotate(n=Count("id"))
        .values_list("room_id", "n")
    )
    bad_personnel = bad_seq = bad_last_seq = 0
    for room in Room.objects.filter(pk__in=room_ids).only("pk", "personnel", "last_seq"):
        if room.personnel != active.get(room.pk, 0):
            bad_personnel += 1
        row = stats.get(room.pk)
        if row is None:
            bad_last_seq += room.last_seq != 0
            continue
        if row["lo"] != 1 or row["hi"] - row["lo"] + 1 != row["n"]:
            bad_seq += 1
        if room.last_seq != row["hi"]:
            bad_last_seq += 1
    return {"personnel_mismatch": bad_personnel, "seq_gaps": bad_seq, "last_seq_mismatch": bad_last_seq}


def ensure_changes(room_id: int, count: int, reactors: Sequence[int]) -> int:
    """`count` changes to as many of the room's unchanged TALK messages, oldest first, each taking the room's
    next seq: every other one an edit (with its edit history row), the others a reaction of one of
    `reactors` (with its reaction row), kept as messaging.services keeps them. Returns how many were made."""
    with transaction.atomic():
        last_seq = Room.objects.select_for_update().values_list("last_seq", flat=True).get(pk=room_id)
        messages = list(
            Message.objects.filter(
                room_id=room_id, kind=MessageKind.TALK, last_change_seq__isnull=True, deleted_at__isnull=True
            ).order_by("seq")[:count]
        )
        now = timezone.now()
        edits: list[MessageEdit] = []
        reactions: list[Reaction] = []
        for index, message in enumerate(messages):
            seq = last_seq + 1 + index
            message.last_change_seq = seq
            if index % 2 == 0:
                edits.append(MessageEdit(message=message, seq=seq, previous_body=message.body, edited_at=now))
                message.body, message.edited_at = f"{message.body} (edited)", now
            else:
                user_id = reactors[index % len(reactors)]
                reactions.append(Reaction(message=message, user_id=user_id, emoji="thumbsup", created_at=now))
                message.reactions = [{"emoji": "thumbsup", "count": 1, "users": [user_id]}]
        Message.objects.bulk_update(messages, ["body", "edited_at", "reactions", "last_change_seq"], batch_size=BATCH)
        MessageEdit.objects.bulk_create(edits, batch_size=BATCH)
        Reaction.objects.bulk_create(reactions, batch_size=BATCH)
        Room.objects.filter(pk=room_id).update(last_seq=last_seq + len(messages))
    return len(messages)
