"""ENTER/LEAVE messages for rooms' membership changes (rooms never imports messaging).

rooms.signals are sent inside the membership change's transaction, so the message commits with it.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from rooms import signals
from rooms.models import Room

from .models import MessageKind
from .services import post_membership_message


@receiver(signals.member_joined, sender=Room)
def write_enter_message(sender: Any, room: Room, user: Any, at: Any, **kwargs: Any) -> None:
    post_membership_message(room_id=room.pk, user=user, kind=MessageKind.ENTER, at=at)


@receiver(signals.member_left, sender=Room)
def write_leave_message(sender: Any, room: Room, user: Any, at: Any, **kwargs: Any) -> None:
    post_membership_message(room_id=room.pk, user=user, kind=MessageKind.LEAVE, at=at)
