"""ENTER/LEAVE messages for rooms' membership changes (rooms never imports messaging), and the news of
them for the user's own user sockets (messaging.activity).

rooms.signals are sent inside the membership change's transaction, so the message commits with it (and
the news is published after that commit).
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from rooms import signals
from rooms.models import Room

from .activity import publish_membership_changed
from .models import MessageKind
from .services import post_membership_message


@receiver(signals.member_joined, sender=Room)
def write_enter_message(sender: Any, room: Room, user: Any, at: Any, **kwargs: Any) -> None:
    post_membership_message(room_id=room.pk, user=user, kind=MessageKind.ENTER, at=at)
    publish_membership_changed(user.pk, room.pk, member=True)


@receiver(signals.member_left, sender=Room)
def write_leave_message(sender: Any, room: Room, user: Any, at: Any, **kwargs: Any) -> None:
    post_membership_message(room_id=room.pk, user=user, kind=MessageKind.LEAVE, at=at)
    publish_membership_changed(user.pk, room.pk, member=False)
