"""The ORM presence store (the embedded default; MongoDB holds the same records in deployment).

Room and user are plain integers, as in the MongoDB documents: presence is a cache of who holds a socket,
not part of the rooms schema, and a socket of a room deleted a moment ago must not fail on a foreign key.
"""

from __future__ import annotations

from django.db import models


class PresenceConnection(models.Model):
    """One live chat socket. Deleted when it closes, or by any process once its heartbeat is too old."""

    connection_id = models.CharField(max_length=64, primary_key=True)
    room_id = models.BigIntegerField()
    user_id = models.BigIntegerField()
    process_id = models.CharField(max_length=100, db_index=True)
    connected_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["room_id", "user_id"], name="presence_conn_room_user")]

    def __str__(self) -> str:
        return f"user {self.user_id} in room {self.room_id} on {self.process_id}"


class PresenceState(models.Model):
    """When a user was last present in a room, and when they stopped being present."""

    room_id = models.BigIntegerField()
    user_id = models.BigIntegerField()
    left_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room_id", "user_id"], name="presence_state_room_user")]

    def __str__(self) -> str:
        return f"user {self.user_id} in room {self.room_id}"
