from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Case, F, Q, Value, When

MIN_MAX_PERSONNEL = 2
MAX_MAX_PERSONNEL = 10_000
TITLE_MAX_LENGTH = 100
DM_MAX_PERSONNEL = 2


class RoomKind(models.TextChoices):
    ROOM = "room"
    DM = "dm"


class Visibility(models.TextChoices):
    PUBLIC = "public"
    PRIVATE = "private"


class HistoryVisibility(models.TextChoices):
    ALL = "all"
    SINCE_JOIN = "since_join"


class Role(models.TextChoices):
    OWNER = "owner"
    MODERATOR = "moderator"
    MEMBER = "member"


class Room(models.Model):
    """A chat room. `personnel` counts active memberships and is only changed by rooms.services.

    `last_seq` is the seq of the room's newest message: messaging takes the next one from this row in the
    same transaction as the insert, which makes seq gapless and serialises writers per room only.
    """

    title = models.CharField(max_length=TITLE_MAX_LENGTH, db_index=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="owned_rooms"
    )
    max_personnel = models.PositiveIntegerField()
    personnel = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seq = models.BigIntegerField(default=0)
    kind = models.CharField(max_length=8, choices=RoomKind.choices, default=RoomKind.ROOM)
    visibility = models.CharField(max_length=8, choices=Visibility.choices, default=Visibility.PUBLIC)
    history_visibility = models.CharField(
        max_length=12, choices=HistoryVisibility.choices, default=HistoryVisibility.ALL
    )
    # A DM's two users, lower id first: the unique pair is what makes "open a DM" idempotent under races.
    dm_user_low = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    dm_user_high = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["visibility", "-id"], name="room_visibility_id")]
        constraints = [
            models.UniqueConstraint(fields=["dm_user_low", "dm_user_high"], name="room_one_dm_per_pair"),
            models.CheckConstraint(condition=Q(personnel__gte=0), name="room_personnel_not_negative"),
            models.CheckConstraint(condition=Q(personnel__lte=F("max_personnel")), name="room_personnel_within_max"),
            models.CheckConstraint(
                condition=Q(max_personnel__gte=MIN_MAX_PERSONNEL) & Q(max_personnel__lte=MAX_MAX_PERSONNEL),
                name="room_max_personnel_range",
            ),
            models.CheckConstraint(condition=Q(last_seq__gte=0), name="room_last_seq_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.personnel}/{self.max_personnel})"

    @property
    def is_full(self) -> bool:
        return self.personnel >= self.max_personnel


MAX_ID = 2**63 - 1


def is_room_id(value: Any) -> bool:
    """Whether any database can be asked about this id (a path's <int:...> is unbounded)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID


class MembershipQuerySet(models.QuerySet["Membership"]):
    def active(self) -> MembershipQuerySet:
        """Membership itself: the one definition every app uses (the seq UPDATE compiles it too)."""
        return self.filter(is_active=True)

    def with_history_floor(self) -> MembershipQuerySet:
        """Each row's history floor as `history_floor`: the SQL form of history_floor (below; keep the two
        together), which the seq UPDATE of a change returns so that a change reads no membership row."""
        return self.annotate(
            history_floor=Case(
                When(room__history_visibility=HistoryVisibility.SINCE_JOIN, then=F("visible_after_seq")),
                default=Value(0),
                output_field=models.BigIntegerField(),
            )
        )


class Membership(models.Model):
    """One row per (room, user), kept after leaving so that left_at and the read position survive.

    `is_active` is membership itself; a rejoin flips it back. personnel == count of active rows.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    is_active = models.BooleanField(default=False)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    # The room's last_seq when this membership began (its ENTER comes after): with history "since_join",
    # nothing at or below it is shown to this member, on any path.
    visible_after_seq = models.BigIntegerField(default=0)
    joined_at = models.DateTimeField(null=True, blank=True)
    last_read_seq = models.BigIntegerField(default=0)
    left_at = models.DateTimeField(null=True, blank=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="membership_one_per_room_user"),
        ]
        indexes = [
            models.Index(fields=["user", "is_active"], name="membership_user_active"),
            # The periodic socket re-check of every process reads the memberships that ended lately.
            models.Index(fields=["left_at"], name="membership_left_at"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.room_id} ({'member' if self.is_active else 'left'})"


def history_floor(membership: Membership) -> int:
    """The highest seq this member may not see (0: all of it): the room's last_seq at their join when the
    room shows history "since_join". Load `membership.room` with it (require_member does). The same rule in
    SQL: MembershipQuerySet.with_history_floor."""
    if membership.room.history_visibility == HistoryVisibility.SINCE_JOIN:
        return membership.visible_after_seq
    return 0


class RoomEvent(models.Model):
    """A room event that is not a message (kick, ban, unban, role change): it takes the room's next seq
    like a message does, so sockets, resume and gap fill show it in order with the messages."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="events")
    seq = models.BigIntegerField()
    type = models.CharField(max_length=32)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "seq"], name="room_event_one_per_seq")]

    def __str__(self) -> str:
        return f"{self.type} #{self.seq} in {self.room_id}"

    def frame(self) -> dict[str, Any]:
        """The socket frame: {"type", "seq", "user", "by", "role"?}, the same for every receiver."""
        return {"type": self.type, "seq": self.seq, **self.data}


class Ban(models.Model):
    """A user who may not come back to a room, by any path, until unbanned (the row is deleted)."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="bans")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    banned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="ban_one_per_room_user")]

    def __str__(self) -> str:
        return f"{self.user_id} banned from {self.room_id}"


class Invite(models.Model):
    """An invitation to a room: for one user, or a link anyone holding the token may use.

    Only the token's SHA-256 is stored: reading the table does not give anyone a usable invite. `uses` is
    counted by one conditional UPDATE, so `max_uses` holds under concurrent accepts."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="invites")
    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    max_uses = models.PositiveIntegerField(null=True, blank=True)
    uses = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(max_uses__isnull=True) | Q(uses__lte=F("max_uses")), name="invite_uses_within_max"
            ),
        ]

    def __str__(self) -> str:
        return f"invite to {self.room_id} ({self.uses}/{self.max_uses or '∞'})"


class Block(models.Model):
    """`blocker` wants nothing from `blocked`: no new DM between them, no sends into their DM."""

    blocker = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    blocked = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["blocker", "blocked"], name="block_one_per_pair")]

    def __str__(self) -> str:
        return f"{self.blocker_id} blocks {self.blocked_id}"
