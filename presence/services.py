"""The presence domain: who is in each room, on any server process, with no ghosts.

A user is connected to a room while any of their chat sockets to it is open on any process. Each socket is
one record in the presence store (see presence.backends), refreshed by its process's heartbeat; records
whose heartbeat is older than PRESENCE_TIMEOUT_SECONDS are not counted and are reaped by any process, so a
process killed with SIGKILL leaves no ghost for longer than the timeout.

Every change of the store made here (a socket opened, closed, re-registered after an outage, or reaped) is
recorded as an event ("presence.connected" / "presence.disconnected") in a small transaction right after
it, and published to the room's presence sockets on every process. The store and the database are two
systems: the change and its event cannot share one transaction, so the event follows the change.

Participants are the room's members (active memberships), connected or not. A non-member never appears,
even if one of their sockets is still closing after they left: the list answers "who belongs here and who
of them is here", and a socket of a non-member is closed by messaging as soon as they leave.
`left_at` is the later of "their last socket to the room closed" (kept by the store) and "they left the
room" (rooms.Membership.left_at), as the contract defines it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from accounts.models import User
from events.services import record_event
from realtime import publish as realtime_publish
from rooms.models import Membership
from rooms.services import require_member

from .backends import ConnectionRecord, PresenceUnavailable, RoomUserState, get_presence_backend

logger = logging.getLogger(__name__)

CONNECTED = "presence.connected"
DISCONNECTED = "presence.disconnected"


@dataclass(frozen=True)
class Participant:
    user_id: int
    username: str
    nickname: str
    connected: bool
    connections: int
    left_at: datetime | None
    last_seen_at: datetime | None
    member: bool = True  # False only in the change frame that tells a user left the room

    def as_frame_dict(self) -> dict[str, Any]:
        """The participant of the presence socket's frames."""
        return {
            "user": {"id": self.user_id, "username": self.username, "nickname": self.nickname},
            "connected": self.connected,
            "connections": self.connections,
            "left_at": _iso(self.left_at),
            "last_seen_at": _iso(self.last_seen_at),
            "member": self.member,
        }


@dataclass(frozen=True)
class PresenceChange:
    """One change of the store: what was recorded as an event and must be published."""

    kind: str  # CONNECTED or DISCONNECTED
    room_id: int
    connection_id: str
    process_id: str
    participant: Participant


def presence_group(room_id: int) -> str:
    return f"presence.{room_id}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _later(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def store_time(at: datetime | None = None) -> datetime:
    """Times as both stores keep them: MongoDB dates have millisecond precision, so the ORM's do too."""
    at = at or timezone.now()
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def live_since(now: datetime | None = None) -> datetime:
    """Heartbeats older than this belong to dead processes."""
    return (now or timezone.now()) - timedelta(seconds=settings.PRESENCE_TIMEOUT_SECONDS)


# --- reads ------------------------------------------------------------------------------------------------
def _states(
    room_ids: list[int], user_ids: Iterable[int] | None = None, *, strict: bool = False
) -> dict[tuple[int, int], RoomUserState] | None:
    """The store's view. While it is away: None for readers (presence degraded: everyone reads as not
    connected), PresenceUnavailable for writers (strict), which must not publish a state they could not read."""
    try:
        return get_presence_backend().states(room_ids, live_since(), user_ids)
    except PresenceUnavailable as exc:
        if strict:
            raise
        logger.warning("presence store unavailable, participants read without it: %s", exc)
        return None


def _participant(
    user: Any, state: RoomUserState | None, membership_left_at: datetime | None, member: bool = True
) -> Participant:
    state = state or RoomUserState(0, None, None)
    return Participant(
        user_id=int(user.pk),
        username=user.username,
        nickname=user.nickname,
        connected=state.connections > 0,
        connections=state.connections,
        left_at=_later(state.left_at, membership_left_at),
        last_seen_at=state.last_seen_at,
        member=member,
    )


def _participants_for_rooms(room_ids: list[int]) -> tuple[dict[int, list[Participant]], bool]:
    """The participants, and whether the store answered (False: presence degraded)."""
    room_ids = sorted({int(r) for r in room_ids})
    result: dict[int, list[Participant]] = {room_id: [] for room_id in room_ids}
    if not room_ids:
        return result, True
    memberships = (
        Membership.objects.active()
        .filter(room_id__in=room_ids)
        .select_related("user")
        .order_by("room_id", "user__username")
    )
    states = _states(room_ids)
    for membership in memberships:
        state = (states or {}).get((membership.room_id, membership.user_id))
        result[membership.room_id].append(_participant(membership.user, state, membership.left_at))
    return result, states is not None


def participants_for_rooms(room_ids: list[int]) -> dict[int, list[Participant]]:
    """Every active member of each room, connected or not, ordered by username. Two queries and one store
    read for any number of rooms (GraphQL resolves many rooms at once through this)."""
    return _participants_for_rooms(room_ids)[0]


def participants_of(room_id: int, user_ids: Iterable[int], *, strict: bool = True) -> dict[int, Participant]:
    """These users' presence in one room, members or not (a change frame describes whoever changed):
    two queries and one store read for any number of users. Strict by default: raises PresenceUnavailable
    rather than describe a user as absent because the store did not answer."""
    user_ids = {int(u) for u in user_ids}
    users = User.objects.filter(pk__in=user_ids).only("id", "username", "nickname").in_bulk()
    memberships = {
        m["user_id"]: m
        for m in Membership.objects.filter(room_id=room_id, user_id__in=user_ids).values(
            "user_id", "left_at", "is_active"
        )
    }
    states = (_states([room_id], users, strict=strict) or {}) if users else {}
    found: dict[int, Participant] = {}
    for user_id, user in users.items():
        membership = memberships.get(user_id)
        found[user_id] = _participant(
            user,
            states.get((room_id, user_id)),
            membership["left_at"] if membership else None,
            member=bool(membership and membership["is_active"]),
        )
    return found


def left_at(room_id: int, user_id: int) -> datetime | None:
    """The last time the user stopped being present in the room: their last socket closed or they left,
    whichever is later; None if neither happened."""
    membership_left_at = (
        Membership.objects.filter(room_id=room_id, user_id=user_id).values_list("left_at", flat=True).first()
    )
    state = (_states([room_id], [user_id]) or {}).get((room_id, user_id))
    return _later(state.left_at if state else None, membership_left_at)


def members(*, room_id: int, user: Any) -> list[dict[str, Any]]:
    """GET /api/rooms/{id}/members: every active member with read position and presence; members only."""
    require_member(room_id, user)
    memberships = list(
        Membership.objects.active().filter(room_id=room_id).select_related("user").order_by("joined_at", "id")
    )
    states = _states([room_id]) or {}
    rows = []
    for membership in memberships:
        state = states.get((room_id, membership.user_id)) or RoomUserState(0, None, None)
        rows.append(
            {
                "user": membership.user.as_public_dict(),
                "joined_at": _iso(membership.joined_at),
                "last_read_seq": membership.last_read_seq,
                "connected": state.connections > 0,
                "left_at": _iso(_later(state.left_at, membership.left_at)),
                "role": membership.role,
            }
        )
    return rows


def snapshot_frame(room_id: int) -> dict[str, Any]:
    """The presence socket's first frame; `degraded` tells the client that the store did not answer (everyone
    then reads as not connected until the changes that follow its return)."""
    participants, answered = _participants_for_rooms([room_id])
    return {
        "type": "presence.snapshot",
        "participants": [p.as_frame_dict() for p in participants[room_id]],
        "degraded": not answered,
    }


# --- changes ----------------------------------------------------------------------------------------------
def _record_events(changes: list[PresenceChange]) -> None:
    """One event per change, in one small transaction right after the changes of the store."""
    if not changes:
        return
    try:
        with transaction.atomic():
            for change in changes:
                p = change.participant
                record_event(
                    change.kind,
                    room_id=change.room_id,
                    data={
                        "room_id": change.room_id,
                        "user": {"id": p.user_id, "username": p.username, "nickname": p.nickname},
                        "connection_id": change.connection_id,
                        "process_id": change.process_id,
                        "connections": p.connections,
                        "connected": p.connected,
                    },
                )
    except DatabaseError:
        logger.exception("could not record %d presence events", len(changes))


def _report(
    connected: list[ConnectionRecord], disconnected: list[tuple[ConnectionRecord, datetime]]
) -> list[PresenceChange]:
    """After changes of the store: read the changed users' new state (one read per room), move left_at
    forward for those with no live socket left, record the events, and describe the changes to publish."""
    users_by_room: dict[int, set[int]] = {}
    for record in [*connected, *(r for r, _ in disconnected)]:
        users_by_room.setdefault(record.room_id, set()).add(record.user_id)
    now: dict[tuple[int, int], Participant] = {}
    for room_id, user_ids in users_by_room.items():
        for user_id, found in participants_of(room_id, user_ids).items():
            now[(room_id, user_id)] = found
    last_close: dict[tuple[int, int], datetime] = {}
    for record, at in disconnected:
        key = (record.room_id, record.user_id)
        last_close[key] = max(at, last_close.get(key, at))
    for key, at in last_close.items():
        found = now.get(key)
        if found is not None and not found.connected:
            get_presence_backend().mark_absent(key[0], key[1], at)
            now[key] = replace(found, left_at=_later(found.left_at, at), last_seen_at=_later(found.last_seen_at, at))
    changes = [
        PresenceChange(kind, r.room_id, r.connection_id, r.process_id, now[(r.room_id, r.user_id)])
        for kind, records in ((CONNECTED, connected), (DISCONNECTED, [r for r, _ in disconnected]))
        for r in records
        if (r.room_id, r.user_id) in now  # a deleted user has nothing to show
    ]
    _record_events(changes)
    return changes


def apply_socket_changes(
    *,
    opened: Iterable[ConnectionRecord] = (),
    closed: Iterable[tuple[ConnectionRecord, datetime]] = (),
    at: datetime | None = None,
) -> list[PresenceChange]:
    """Chat sockets of one process opened and closed, applied in bulk (a burst of hundreds of sockets costs a
    few store round trips, not a few per socket). Opens are applied before closes, so a socket that opened
    and closed within one batch leaves nothing behind. Raises PresenceUnavailable when the store is away
    (the caller degrades). Only changes this call made are reported: an open of a socket already known or a
    close of one already gone (reaped) is no change."""
    at = store_time(at)
    backend = get_presence_backend()
    opened, closed = list(opened), [(record, store_time(when)) for record, when in closed]
    created = set(backend.upsert_connections(opened, at)) if opened else set()
    removed = set(backend.remove_connections([r.connection_id for r, _ in closed])) if closed else set()
    return _report(
        [r for r in opened if r.connection_id in created],
        [(r, when) for r, when in closed if r.connection_id in removed],
    )


def connection_opened(
    *, room_id: int, user_id: int, connection_id: str, process_id: str, at: datetime | None = None
) -> list[PresenceChange]:
    """A chat socket opened (one at a time: tests, tools; the tracker batches)."""
    at = store_time(at)
    record = ConnectionRecord(connection_id, room_id, user_id, process_id, at, at)
    return apply_socket_changes(opened=[record], at=at)


def connection_closed(
    *, room_id: int, user_id: int, connection_id: str, process_id: str = "", at: datetime | None = None
) -> list[PresenceChange]:
    """A chat socket closed. Only the caller whose delete removed the record reports the change."""
    at = store_time(at)
    record = ConnectionRecord(connection_id, room_id, user_id, process_id, at, at)
    return apply_socket_changes(closed=[(record, at)], at=at)


def sync_process(
    *,
    process_id: str,
    open_connections: Iterable[ConnectionRecord],
    closed_at: dict[str, datetime] | None = None,
    at: datetime | None = None,
    reconcile: bool = True,
) -> list[PresenceChange]:
    """The heartbeat: make the store hold exactly this process's open sockets, with a fresh heartbeat.

    Sockets the store had lost (reaped while this process stalled, or opened while the store was away) come
    back; records of sockets that closed while the store was away are removed. This is also how presence
    recovers by itself after an outage: the first heartbeat that succeeds puts everything right.
    `closed_at` gives the real close time of sockets that closed while the store was away (for left_at).

    Without `reconcile` (the tracker's steady state) one write refreshes every record of the process, and
    only when the store's count differs from this process's is the full reconciliation done: an idle
    process's heartbeat costs one round trip, not a row per socket."""
    at = store_time(at)
    backend = get_presence_backend()
    local = {r.connection_id: r for r in open_connections}
    if not reconcile and not closed_at and backend.touch_process(process_id, at) == len(local):
        return []
    created = backend.upsert_connections(local.values(), at) if local else []
    gone = {r.connection_id: r for r in backend.connections_of_process(process_id) if r.connection_id not in local}
    removed = backend.remove_connections(list(gone)) if gone else []
    return _report(
        [local[c] for c in created],
        [(gone[c], (closed_at or {}).get(c, at)) for c in removed],
    )


def reap_stale_connections(now: datetime | None = None) -> list[PresenceChange]:
    """Drop connections whose process stopped refreshing them (killed, frozen, cut off). Any process may run
    this at any time: a record is reported by the one caller whose delete removed it. The user stopped being
    present at the last heartbeat anyone saw, which is what left_at records."""
    backend = get_presence_backend()
    reaped: list[tuple[ConnectionRecord, datetime]] = []
    for record in backend.stale_connections(live_since(now)):
        if backend.remove_connection(record.connection_id):
            logger.info(
                "reaped connection %s of user %s in room %s (process %s, last heartbeat %s)",
                record.connection_id,
                record.user_id,
                record.room_id,
                record.process_id,
                record.heartbeat_at.isoformat(),
            )
            reaped.append((record, record.heartbeat_at))
    return _report([], reaped) if reaped else []


def publish_membership_change(room_id: int, user: Any, *, member: bool, at: datetime) -> None:
    """After a join or leave commits: presence sockets add the member, or drop them (and a leaver's own
    presence sockets close with 4403). No read here, so joins stay cheap: every process's feed re-reads the
    user's state when the event arrives; the payload is only its fallback."""
    publish(
        room_id,
        Participant(
            user_id=int(user.pk),
            username=user.username,
            nickname=user.nickname,
            connected=False,
            connections=0,
            left_at=None if member else at,
            last_seen_at=None,
            member=member,
        ),
    )


def room_deleted(room_id: int) -> None:
    """A deleted room's presence records go with it (best effort: the store may be away, and records of
    sockets still closing are reaped anyway); its presence sockets close with 4404."""
    try:
        get_presence_backend().forget_room(room_id)
    except PresenceUnavailable as exc:
        logger.warning("could not forget presence of deleted room %s: %s", room_id, exc)
    realtime_publish.publish(
        presence_group(room_id), {"type": "presence.room_deleted", "group": presence_group(room_id)}
    )


# --- publishing -------------------------------------------------------------------------------------------
# Rooms whose changes one tracker batch publishes at once: each is a group_send on its own Redis connection.
PUBLISH_ROOMS_AT_ONCE = 20


def changed_event(room_id: int, participants: Iterable[Participant]) -> dict[str, Any]:
    """The channel-layer event, any number of users of one room; each process's hub hands it to its presence
    sockets of the room (which re-read those users once, and send a frame for each)."""
    group = presence_group(room_id)
    return {
        "type": "presence.changed",
        "group": group,
        "room_id": room_id,
        "participants": [p.as_frame_dict() for p in participants],
    }


def event_participants(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The participants a presence.changed event names; "participant" is one, as processes of the previous
    release publish it (during a rolling deploy both kinds travel)."""
    if "participants" in event:
        return list(event["participants"])
    return [event["participant"]] if "participant" in event else []


# A lost publish is repaired by the next change of the user or a reconnect's snapshot.
async def apublish(room_id: int, participant: Participant) -> None:
    await realtime_publish.apublish(presence_group(room_id), changed_event(room_id, [participant]))


async def apublish_changes(changes: Iterable[PresenceChange]) -> None:
    """A batch of changes (a burst of sockets opening, a reconciliation, a reap): one event per room, the
    rooms' group_sends side by side, so that a burst of thousands of opens costs a few round trips instead
    of one after another per user. Each user appears once per room, with their state after the batch."""
    by_room: dict[int, dict[int, Participant]] = {}
    for change in changes:
        by_room.setdefault(change.room_id, {})[change.participant.user_id] = change.participant
    rooms = list(by_room.items())
    for start in range(0, len(rooms), PUBLISH_ROOMS_AT_ONCE):
        await asyncio.gather(
            *(
                realtime_publish.apublish(presence_group(room_id), changed_event(room_id, participants.values()))
                for room_id, participants in rooms[start : start + PUBLISH_ROOMS_AT_ONCE]
            )
        )


def publish(room_id: int, participant: Participant) -> None:
    """From sync code (a thread, a management command), after the current transaction commits."""
    realtime_publish.publish(presence_group(room_id), changed_event(room_id, [participant]))
