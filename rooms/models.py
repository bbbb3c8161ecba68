from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

MIN_MAX_PERSONNEL = 2
MAX_MAX_PERSONNEL = 10_000
TITLE_MAX_LENGTH = 100


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

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
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


class MembershipQuerySet(models.QuerySet["Membership"]):
    def active(self) -> MembershipQuerySet:
        """Membership itself: the one definition every app uses (the seq UPDATE compiles it too)."""
        return self.filter(is_active=True)


class Membership(models.Model):
    """One row per (room, user), kept after leaving so that left_at and the read position survive.

    `is_active` is membership itself; a rejoin flips it back. personnel == count of active rows.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    is_active = models.BooleanField(default=False)
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
