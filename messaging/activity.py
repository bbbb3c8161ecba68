"""The user socket /ws/me/: the user's `room.activity` {last_seq, unread, mentions} for each of their rooms,
sent on connect and whenever one of them changes, and their `mention` frames.

Cost. Counting unread messages per member per message would be a query per member per message in a big
room. Instead each user socket joins the live stream of each of its rooms in the process's hub (one
`RoomFeed` per room: the hub receives each room event once per process, whoever listens) and keeps the
counts itself from the frames, which carry everything a new message changes (kind, sender, deleted,
mentions). The database is read again only when a frame cannot say how the counts move:
- the user's own read position moved (the `read` room frame): to "nothing unread" without a query when it
  reaches every seq already counted, else a re-count;
- a message unread for the user was deleted, or an edit may have changed whether it mentions them (a
  message this process has not seen before, or whose mentions of the user changed);
- a sign that the membership ended (their LEAVE message, a kick or ban, the room's member-removed or
  deleted close): the re-count says whether they are still a member.
A re-count is one statement per room and process for all the local users that need it (`RoomActivity`), at
most one in flight per room; frames that arrive meanwhile are kept by seq and applied on top of its answer.

Exactness. Counts read from the database are "as of" the room's last_seq read in the same statement (X): a
seq is taken under the room row's lock until its transaction commits, so every event <= X is in them and none
after. Events with seq <= X are then skipped, later ones applied, so each event is counted once however
the stream and the read interleave.

Membership. Joins reach the user's sockets on every process as a `user.rooms` event on the user's group
(published after commit by messaging.receivers); endings are re-checked as above.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from realtime import frames as socket_frames
from realtime.groups import user_group
from realtime.publish import publish
from realtime.sockets import SocketBase, SocketState, in_worker_thread
from rooms.models import Membership

from .frames import room_activity_frame
from .models import MessageKind
from .services import with_activity_counts

logger = logging.getLogger(__name__)

SEEN_MESSAGES_PER_ROOM = 2048  # the mentions of this many recently seen messages per room and process
STREAM_JOINS_AT_ONCE = 50
RECOUNT_RETRY_SECONDS = 1.0
MEMBERSHIP_EVENT = "user.rooms"
MEMBERSHIP_ENDING_EVENTS = ("member.kicked", "member.banned")


# --- membership events ----------------------------------------------------------------------------------
def publish_membership_changed(user_id: int, room_id: int, member: bool) -> None:
    """After commit: the user's sockets on every process learn they joined or left a room."""
    group = user_group(user_id)
    publish(group, {"type": MEMBERSHIP_EVENT, "group": group, "user_id": user_id, "room": room_id, "member": member})


# --- database reads (worker threads) --------------------------------------------------------------------
@dataclass(frozen=True)
class Counts:
    last_read_seq: int
    unread: int
    mentions: int
    as_of_seq: int  # the room's last_seq in the same snapshot: the counts hold every event up to it


def _counts(memberships: Any) -> dict[tuple[int, int], Counts]:
    rows = with_activity_counts(memberships).values_list(
        "room_id", "user_id", "last_read_seq", "unread", "mentions", "room__last_seq"
    )
    return {(room_id, user_id): Counts(lr, unread, mentions, last) for room_id, user_id, lr, unread, mentions, last in rows}


def _rooms_of(user_id: int, limit: int) -> list[int]:
    """The user's rooms, most recently active first, at most `limit`."""
    return list(
        Membership.objects.active()
        .filter(user_id=user_id)
        .order_by("-room__last_seq", "-room_id")
        .values_list("room_id", flat=True)[:limit]
    )


def _counts_of_user(user_id: int, room_ids: list[int]) -> dict[tuple[int, int], Counts]:
    return _counts(Membership.objects.active().filter(user_id=user_id, room_id__in=room_ids))


def _counts_in_room(room_id: int, user_ids: list[int]) -> dict[tuple[int, int], Counts]:
    return _counts(Membership.objects.active().filter(room_id=room_id, user_id__in=user_ids))


rooms_of_async = in_worker_thread(_rooms_of)
counts_of_user_async = in_worker_thread(_counts_of_user)
counts_in_room_async = in_worker_thread(_counts_in_room)


# --- reading frames ---------------------------------------------------------------------------------------
_last_decoded: tuple[str | None, Any] = (None, None)


def decode_event(text: str) -> Any:
    """A room event's frame as data. A stream hands the same text object to every listener of an event, so
    it is parsed once per process, not once per user socket."""
    global _last_decoded
    if _last_decoded[0] is text:
        return _last_decoded[1]
    frame = json.loads(text)
    _last_decoded = (text, frame)
    return frame


@dataclass(frozen=True)
class Effect:
    """What one room event does to one user's counts."""

    unread: int = 0
    mentions: int = 0
    recount: bool = False  # the frame cannot say: read the counts (and the membership) again


NO_EFFECT = Effect()


def effect_of(
    frame: Any, user_id: int, last_read_seq: int | None, mentions_before: frozenset[int] | None
) -> Effect:
    """The effect of a room event on `user_id` (read position `last_read_seq`, None while unknown).
    `mentions_before`: whom the changed message mentioned before this change, None if not known here."""
    kind = frame.get("type")
    if kind in MEMBERSHIP_ENDING_EVENTS:
        return Effect(recount=True) if (frame.get("user") or {}).get("id") == user_id else NO_EFFECT
    message = frame.get("message")
    if not isinstance(message, dict):
        return NO_EFFECT
    sender_id = (message.get("sender") or {}).get("id")
    if kind == "message":
        if message.get("kind") == MessageKind.LEAVE and sender_id == user_id:
            return Effect(recount=True)
        if message.get("kind") != MessageKind.TALK or sender_id == user_id or message.get("deleted_at"):
            return NO_EFFECT
        return Effect(unread=1, mentions=1 if user_id in message.get("mentions", ()) else 0)
    if kind != "message.updated" or message.get("kind") != MessageKind.TALK or sender_id == user_id:
        return NO_EFFECT
    if last_read_seq is not None and int(message["seq"]) <= last_read_seq:
        return NO_EFFECT  # already read: counts nothing either way
    if message.get("deleted_at") or mentions_before is None:
        return Effect(recount=True)
    if (user_id in mentions_before) != (user_id in message.get("mentions", ())):
        return Effect(recount=True)
    return NO_EFFECT  # a reaction, or an edit that leaves this user's mention as it was


# --- per room and process -----------------------------------------------------------------------------
class RoomActivity:
    """What the user sockets of one room share in this process: the mentions of recently seen messages (to
    tell a reaction, which changes no count, from an edit that changes a mention) and the batched re-count."""

    def __init__(self, room_id: int):
        self.room_id = room_id
        self.feeds: set[RoomFeed] = set()
        # message id -> (seq of the last frame seen, mentions before that frame or None, mentions after it)
        self.seen: OrderedDict[int, tuple[int, frozenset[int] | None, frozenset[int]]] = OrderedDict()
        self.waiting: set[RoomFeed] = set()
        self._recounting: asyncio.Task[None] | None = None

    def observe(self, seq: int, frame: Any) -> frozenset[int] | None:
        """Record the mentions a message frame shows; returns whom it mentioned before this frame (None if
        this process had not seen it). Every feed of the room calls this for each event: the first records."""
        message = frame.get("message")
        if not isinstance(message, dict) or "id" not in message:
            return None
        message_id = int(message["id"])
        entry = self.seen.get(message_id)
        if entry is not None and entry[0] == seq:
            return entry[1]
        before = entry[2] if entry is not None else None
        if frame.get("type") == "message":
            before = frozenset()
        self.seen[message_id] = (seq, before, frozenset(message.get("mentions") or ()))
        self.seen.move_to_end(message_id)
        if len(self.seen) > SEEN_MESSAGES_PER_ROOM:
            self.seen.popitem(last=False)
        return before

    def recount(self, feed: RoomFeed) -> None:
        feed.counting_started()
        self.waiting.add(feed)
        if self._recounting is None or self._recounting.done():
            self._recounting = asyncio.ensure_future(self._recount_loop())

    async def _recount_loop(self) -> None:
        while self.waiting:
            batch = {feed for feed in self.waiting if feed.active}
            self.waiting = set()
            if not batch:
                return
            for feed in batch:
                feed.counting_started()
            try:
                rows = await counts_in_room_async(self.room_id, sorted({feed.user_id for feed in batch}))
            except Exception:  # noqa: BLE001 - database away: keep the frames and try again
                logger.warning("re-count of room %s failed; retrying", self.room_id)
                self.waiting |= batch
                await asyncio.sleep(RECOUNT_RETRY_SECONDS)
                continue
            for feed in batch:
                feed.counting_done(rows.get((self.room_id, feed.user_id)))


_activities: dict[int, RoomActivity] = {}


def _activity_of(room_id: int) -> RoomActivity:
    activity = _activities.get(room_id)
    if activity is None:
        activity = _activities[room_id] = RoomActivity(room_id)
    return activity


def _release_activity(activity: RoomActivity) -> None:
    if not activity.feeds and _activities.get(activity.room_id) is activity:
        del _activities[activity.room_id]


# --- one room of one user socket -----------------------------------------------------------------------
class RoomFeed:
    """A listener of one room's live stream for one user socket: that user's counts in the room."""

    def __init__(self, socket: UserSocket, activity: RoomActivity):
        self.socket = socket
        self.user_id = socket.user_id
        self.room_id = activity.room_id
        self.activity = activity
        self.active = True
        self.loaded = False
        self.last_seq = 0
        self.last_read_seq = 0
        self.unread = 0
        self.mentions = 0
        self.counted_through = 0  # every event up to this seq is in the counts
        self.counting = False  # a read of the counts is in flight
        self.arrived: list[tuple[int, Effect]] = []  # countable events while counting, for after its answer
        self.again = False  # something arrived while counting that needs another count
        self.sent: tuple[int, int, int] | None = None

    # --- from the stream (realtime.streams.StreamListener) ---------------------------------------------
    def deliver_event(self, seq: int, text: str, visible_seq: int | None = None) -> None:
        """`visible_seq` (a change of an older message) needs no check here: a change the user may not see
        concerns a message before their join, which is at or below their read position and counts nothing."""
        if not self.active:
            return
        try:
            frame = decode_event(text)
            before = self.activity.observe(seq, frame)
            effect = effect_of(frame, self.user_id, self.last_read_seq if self.loaded else None, before)
        except Exception:  # noqa: BLE001 - one odd frame must not break the room's fan-out
            logger.exception("room activity could not read an event of room %s", self.room_id)
            effect = Effect(recount=True)
        self.last_seq = max(self.last_seq, seq)
        if self.counting:
            if effect.recount:
                self.again = True
            elif effect.unread or effect.mentions:
                self.arrived.append((seq, effect))
        elif effect.recount:
            self.activity.recount(self)
        else:
            self._apply(seq, effect)
        self.emit()

    def deliver_frame(self, text: str) -> None:
        """Ephemeral room frames: only the user's own `read` (from any tab or process) matters here."""
        if not self.active or not text.startswith('{"type":"read"'):
            return
        frame = decode_event(text)
        if (frame.get("user") or {}).get("id") != self.user_id or int(frame.get("seq", 0)) <= self.last_read_seq:
            return
        if self.counting or not self.loaded:
            self.again = True
            return
        self.last_read_seq = int(frame["seq"])
        if self.last_read_seq >= self.counted_through:
            self.unread = self.mentions = 0  # everything counted is read now: no query needed
            self.emit()
        else:
            self.activity.recount(self)

    def close_with(self, code: int, reason: str) -> None:
        """The room closes its sockets of this user (membership ended) or all (room deleted): the user socket
        stays open; the re-count finds out whether the room is still theirs."""
        if self.active:
            self.activity.recount(self)

    # --- counting -------------------------------------------------------------------------------------
    def _apply(self, seq: int, effect: Effect) -> None:
        if seq <= self.counted_through:
            return  # already in the counts that were read
        self.counted_through = seq
        if seq > self.last_read_seq:
            self.unread += effect.unread
            self.mentions += effect.mentions

    def counting_started(self) -> None:
        if not self.counting:
            self.counting = True
            self.arrived = []
        self.again = False

    def counting_done(self, counts: Counts | None) -> None:
        if not self.active:
            return
        if not self.counting and counts is not None and counts.as_of_seq < self.counted_through:
            return  # a second answer for the same count (the socket's first read and a room's re-count crossed), older
        self.counting = False
        if counts is None:
            self.socket.drop_feed(self)  # not (or no longer) a member
            return
        self.loaded = True
        self.last_read_seq = counts.last_read_seq
        self.unread, self.mentions = counts.unread, counts.mentions
        self.counted_through = counts.as_of_seq
        self.last_seq = max(self.last_seq, counts.as_of_seq)
        arrived, self.arrived = self.arrived, []
        for seq, effect in arrived:
            self._apply(seq, effect)
        if self.again:
            self.activity.recount(self)
        self.emit()

    # --- to the client --------------------------------------------------------------------------------
    def emit(self) -> None:
        """Send the room's state if it changed since the last frame (once the socket is live)."""
        if not self.loaded or not self.active or self.socket.state is not SocketState.LIVE:
            return
        state = (self.last_seq, self.unread, self.mentions)
        if state != self.sent:
            self.sent = state
            self.socket.push_frame(room_activity_frame(self.room_id, *state))


# --- the socket ---------------------------------------------------------------------------------------------
class UserSocket(SocketBase):
    """/ws/me/: authenticated like the chat socket (token, subprotocol pair or session + Origin); counted
    in the per-user socket cap, idle expiry and the credential re-checks like every socket."""

    kind = "me"
    receives_user_frames = True  # `mention` frames (realtime.publish.publish_user_frame)

    async def connect(self) -> None:
        self.init_socket()
        self.feeds: dict[int, RoomFeed] = {}
        self.listening = False
        if not await self.authorize():
            return
        try:
            await self.accept_socket(SocketState.SYNCING)
            await self.register()
            # Before the rooms are listed: a join committed after the listing reaches us as an event.
            await self.hub.add_group_listener(user_group(self.user_id), self)
            self.listening = True
            room_ids = await rooms_of_async(self.user_id, settings.WS_ME_MAX_ROOMS)
            feeds = [self._open_feed(room_id) for room_id in room_ids]
            for feed in feeds:
                feed.counting_started()
            await self._join_streams(feeds)
            # After joining the streams: what they deliver from now on is either in these counts or after them.
            rows = await counts_of_user_async(self.user_id, room_ids)
        except Exception:  # noqa: BLE001 - channel layer or database away: the client reconnects
            logger.exception("could not open the user socket")
            self.close_with(socket_frames.CLOSE_TRY_AGAIN, "temporarily unavailable; reconnect shortly")
            return
        for feed in feeds:
            feed.counting_done(rows.get((feed.room_id, self.user_id)))
        if self.closing:
            return
        self.move_to(SocketState.LIVE)
        for feed in list(self.feeds.values()):  # the listed rooms, most recently active first, then any joined meanwhile
            feed.emit()

    async def _join_streams(self, feeds: list[RoomFeed]) -> None:
        for start in range(0, len(feeds), STREAM_JOINS_AT_ONCE):
            chunk = feeds[start : start + STREAM_JOINS_AT_ONCE]
            await asyncio.gather(*(self.hub.join_room(feed.room_id, feed) for feed in chunk))

    def _open_feed(self, room_id: int) -> RoomFeed:
        activity = _activity_of(room_id)
        feed = RoomFeed(self, activity)
        activity.feeds.add(feed)
        self.feeds[room_id] = feed
        return feed

    def drop_feed(self, feed: RoomFeed) -> None:
        """The user is not a member of the feed's room (any more): say so once, stop following it."""
        if not feed.active:
            return
        feed.active = False
        if self.feeds.get(feed.room_id) is feed:
            del self.feeds[feed.room_id]
        if feed.sent is not None and self.state is SocketState.LIVE:
            self.push_frame(room_activity_frame(feed.room_id, feed.last_seq, 0, 0, member=False))
        self._forget(feed)

    def _forget(self, feed: RoomFeed) -> None:
        feed.activity.feeds.discard(feed)
        feed.activity.waiting.discard(feed)
        _release_activity(feed.activity)
        asyncio.ensure_future(self.hub.leave_room(feed.room_id, feed))

    async def _follow(self, feed: RoomFeed) -> None:
        try:
            await self.hub.join_room(feed.room_id, feed)
        except Exception:  # noqa: BLE001 - channel layer away: the room shows up on the next connect
            logger.exception("user socket could not follow room %s", feed.room_id)
            if feed.active:
                feed.active = False
                self.feeds.pop(feed.room_id, None)
                self._forget(feed)
            return
        if feed.active:
            feed.activity.recount(feed)

    # --- the user's group (realtime.hub.GroupListener) -------------------------------------------------
    def hub_event(self, event: dict[str, Any]) -> None:
        if event.get("type") != MEMBERSHIP_EVENT or self.closing:
            return
        room_id = int(event["room"])
        feed = self.feeds.get(room_id)
        if feed is not None:
            feed.activity.recount(feed)  # left, or left and joined again: the database says which
        elif event.get("member") and len(self.feeds) < settings.WS_ME_MAX_ROOMS:
            feed = self._open_feed(room_id)
            feed.counting_started()
            asyncio.ensure_future(self._follow(feed))

    # --- frames -----------------------------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Only pings: they keep the socket from idling out."""
        if self.closing:
            return
        self.last_activity = time.monotonic()
        if len(text_data or bytes_data or b"") > settings.WS_MAX_FRAME_BYTES:
            self.close_with(socket_frames.CLOSE_TOO_BIG, "frame over 64 KiB")
            return
        try:
            frame = json.loads(text_data or "")
        except (ValueError, RecursionError):
            frame = None
        if isinstance(frame, dict) and frame.get("type") == "ping":
            self.push_frame(socket_frames.pong_frame())
        else:
            self.push_frame(socket_frames.error_frame("unknown_type", 'The user socket only takes {"type": "ping"}.'))

    async def disconnect(self, code: int) -> None:
        await self.unregister()
        if getattr(self, "listening", False):
            self.listening = False
            await self.hub.remove_group_listener(user_group(self.user_id), self)
        feeds: Iterable[RoomFeed] = list(getattr(self, "feeds", {}).values())
        self.feeds = {}
        for feed in feeds:
            feed.active = False
            feed.activity.feeds.discard(feed)
            feed.activity.waiting.discard(feed)
            _release_activity(feed.activity)
            await self.hub.leave_room(feed.room_id, feed)
