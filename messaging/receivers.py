"""ENTER/LEAVE messages for rooms' membership changes (rooms never imports messaging), the news of them
for the user's own user sockets (messaging.activity), and attachment files that leave with their rows.

rooms.signals are sent inside the membership change's transaction, so the message commits with it (and
the news is published after that commit).
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete
from django.dispatch import receiver

from rooms import signals
from rooms.models import Room

from .activity import publish_membership_changed
from .attachments import remove_files_after_commit
from .models import Attachment, MessageKind
from .services import post_membership_message


@receiver(signals.member_joined, sender=Room)
def write_enter_message(sender: Any, room: Room, user: Any, at: Any, **kwargs: Any) -> None:
    post_membership_message(room_id=room.pk, user=user, kind=MessageKind.ENTER, at=at)
    publish_membership_changed(user.pk, room.pk, member=True)


@receiver(signals.member_left, sender=Room)
def write_leave_message(sender: Any, room: Room, user: Any, at: Any, **kwargs: Any) -> None:
    post_membership_message(room_id=room.pk, user=user, kind=MessageKind.LEAVE, at=at)
    publish_membership_changed(user.pk, room.pk, member=False)


@receiver(post_delete, sender=Attachment)
def remove_attachment_files(sender: Any, instance: Attachment, **kwargs: Any) -> None:
    """A row's files go with it (message deleted, room deleted, orphan removed), once the delete commits."""
    remove_files_after_commit(instance)
