"""ENTER/LEAVE messages and socket closes for rooms' membership changes (rooms never imports messaging)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import receiver

from rooms import signals
from rooms.models import Room

from .fanout import publish_member_removed, publish_room_deleted
from .models import MessageKind
from .services import post_membership_message


@receiver(signals.member_joined, sender=Room)
def write_enter_message(sender: Any, room: Room, user: Any, at: Any, **kwargs: Any) -> None:
    post_membership_message(room_id=room.pk, user=user, kind=MessageKind.ENTER, at=at)


@receiver(signals.member_left, sender=Room)
def write_leave_message(sender: Any, room: Room, user: Any, at: Any, **kwargs: Any) -> None:
    post_membership_message(room_id=room.pk, user=user, kind=MessageKind.LEAVE, at=at)
    room_id, user_id = room.pk, user.pk
    transaction.on_commit(lambda: publish_member_removed(room_id, user_id))


@receiver(signals.room_deleting, sender=Room)
def close_sockets_of_deleted_room(sender: Any, room: Room, **kwargs: Any) -> None:
    room_id = room.pk
    transaction.on_commit(lambda: publish_room_deleted(room_id))
