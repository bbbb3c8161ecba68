from __future__ import annotations

import uuid
from pathlib import PurePosixPath

from django.conf import settings
from django.db import models

from rooms.models import Room

# A message keeps at most this many distinct reactions, and names at most this many users per reaction
# (the contract's bounds: a frame stays small however popular a message is).
MAX_DISTINCT_REACTIONS = 20
MAX_REACTION_USERS_SHOWN = 20
ATTACHMENT_NAME_MAX_CHARS = 200


class MessageKind(models.TextChoices):
    TALK = "TALK"
    ENTER = "ENTER"
    LEAVE = "LEAVE"


class Message(models.Model):
    """A stored message in its current state. (room, seq) is gapless per room together with the changes;
    (room, sender, client_id) makes sends idempotent.

    Every change (edit, delete, reaction) takes the room's next seq like a send does; the message keeps only
    the seq of its latest change (`last_change_seq`): a resume replays each changed message once, in its
    current state, at that seq (the contract allows a replay to skip a superseded change), so no log of
    changes has to be kept or read back.
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.BigIntegerField()
    client_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=5, choices=MessageKind.choices, default=MessageKind.TALK)
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    body = models.TextField(blank=True)
    created_at = models.DateTimeField(db_index=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies")
    last_change_seq = models.BigIntegerField(null=True, blank=True)
    # Denormalised from Reaction rows under the message's row lock: [{emoji, count, users: [ids ≤ 20]}] in
    # the order each emoji was first used; reads and frames never aggregate.
    reactions = models.JSONField(default=list, blank=True)
    mentions = models.JSONField(default=list, blank=True)  # user ids, in order of appearance
    # Denormalised from its Attachment rows when sent (they never change after): [{id, name, size,
    # content_type, width, height, thumbnail: bool}]; reads add fresh signed urls without a query.
    attachments = models.JSONField(default=list, blank=True)
    # The n-grams of the body's CJK text, which full-text search indexes beside the body (messaging.search).
    search_terms = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["room_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="message_seq_unique_per_room"),
            models.UniqueConstraint(fields=["room", "sender", "client_id"], name="message_client_id_idempotent"),
        ]
        indexes = [
            models.Index(fields=["room", "created_at"], name="message_room_created"),
            models.Index(
                fields=["room", "last_change_seq"],
                name="message_room_change",
                condition=models.Q(last_change_seq__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq}@{self.room_id} {self.kind}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class MessageEdit(models.Model):
    """A body that an edit replaced: the edit history staff see in the admin. Removed with the message's
    deletion (a deleted body is kept nowhere)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="edits")
    seq = models.BigIntegerField()  # the seq the edit took
    previous_body = models.TextField()
    edited_at = models.DateTimeField()

    class Meta:
        ordering = ["message_id", "seq"]

    def __str__(self) -> str:
        return f"edit #{self.seq} of message {self.message_id}"


class Reaction(models.Model):
    """One user's reaction with one emoji to one message: the truth behind Message.reactions."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reaction_rows")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reactions")
    emoji = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["message_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["message", "user", "emoji"], name="reaction_once_per_user_emoji"),
        ]

    def __str__(self) -> str:
        return f"{self.emoji} by {self.user_id} on {self.message_id}"


class Mention(models.Model):
    """A member named by @username in a live message: what the `mentions` counts read (per user, by seq)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="mention_rows")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mentions")
    seq = models.BigIntegerField()  # the message's seq (what read positions compare with)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["message", "user"], name="mention_once_per_message")]
        indexes = [models.Index(fields=["user", "room", "seq"], name="mention_user_room_seq")]

    def __str__(self) -> str:
        return f"@{self.user_id} in {self.message_id}"


def attachment_path(instance: Attachment, filename: str) -> str:
    """Where a file is stored: a random name under the room, never anything the client chose."""
    return f"rooms/{instance.room_id}/{uuid.uuid4().hex}{PurePosixPath(filename).suffix[:8]}"


class Attachment(models.Model):
    """A file uploaded to a room, sent with at most one message (`message` is set in the send's transaction).

    Rows without a message are uploads not sent yet; `remove_orphan_attachments` removes those older than
    ATTACHMENT_ORPHAN_HOURS. A row's files are removed with the row, after commit (messaging.receivers).
    `file` holds what members download: for an image, the re-encoded copy without its metadata (EXIF GPS),
    never the bytes as uploaded."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="attachments")
    uploader = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="attachments"
    )
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachment_files"
    )
    name = models.CharField(max_length=ATTACHMENT_NAME_MAX_CHARS)
    size = models.BigIntegerField()
    content_type = models.CharField(max_length=100)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    file = models.FileField(upload_to=attachment_path, max_length=255)
    thumbnail = models.FileField(upload_to=attachment_path, max_length=255, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["room", "uploader"], name="attachment_pending", condition=models.Q(message__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.content_type}, {self.size} B)@{self.room_id}"
