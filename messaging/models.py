from __future__ import annotations

from django.conf import settings
from django.db import models

from rooms.models import Room


class MessageKind(models.TextChoices):
    TALK = "TALK"
    ENTER = "ENTER"
    LEAVE = "LEAVE"


class Message(models.Model):
    """A stored message. (room, seq) is gapless per room; (room, sender, client_id) makes sends idempotent."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField()
    client_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=5, choices=MessageKind.choices, default=MessageKind.TALK)
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    body = models.TextField(blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["room_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="message_seq_unique_per_room"),
            models.UniqueConstraint(fields=["room", "sender", "client_id"], name="message_client_id_idempotent"),
        ]
        indexes = [models.Index(fields=["room", "created_at"], name="message_room_created")]

    def __str__(self) -> str:
        return f"#{self.seq}@{self.room_id} {self.kind}"
