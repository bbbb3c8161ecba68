"""Presence listens to sockets (realtime) and rooms (membership); neither knows presence exists.

The socket receivers only hand the change to this process's tracker (a dict and a queue): the chat
consumer awaits them, so they must be instant and must never raise, whatever state MongoDB is in.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.db import transaction
from django.dispatch import receiver

from realtime.signals import room_socket_closed, room_socket_opened
from rooms import signals as room_signals
from rooms.models import Room

from . import services
from .tracker import get_tracker

logger = logging.getLogger(__name__)

CLOSE_WAIT_SECONDS = 3.0


@receiver(room_socket_opened)
async def register_chat_socket(sender: Any, room_id: int, user_id: int, connection_id: str, **kwargs: Any) -> None:
    try:
        get_tracker().socket_opened(room_id, user_id, connection_id)
    except Exception:  # noqa: BLE001 - presence must never break chat
        logger.exception("presence could not register socket %s", connection_id)


@receiver(room_socket_closed)
async def unregister_chat_socket(sender: Any, room_id: int, user_id: int, connection_id: str, **kwargs: Any) -> None:
    """Waits (briefly) until the removal is applied: a server shutting down waits for its sockets' disconnect
    handlers, so a graceful restart leaves no ghosts behind, not even for the timeout."""
    try:
        done = get_tracker().socket_closed(room_id, user_id, connection_id)
        if done is not None:
            await asyncio.wait_for(asyncio.shield(done), CLOSE_WAIT_SECONDS)
    except TimeoutError:
        pass  # the store is slow: the worker finishes later, or the heartbeat reconciles
    except Exception:  # noqa: BLE001
        logger.exception("presence could not unregister socket %s", connection_id)


def _after_commit(action: Any) -> None:
    """Run after the membership change commits; a failure is logged, never raised into rooms."""

    def run() -> None:
        try:
            action()
        except Exception:  # noqa: BLE001
            logger.exception("presence follow-up of a membership change failed")

    transaction.on_commit(run)


@receiver(room_signals.member_joined, sender=Room)
def show_new_member(sender: Any, room: Room, user: Any, at: Any, **kwargs: Any) -> None:
    room_id = room.pk
    _after_commit(lambda: services.publish_membership_change(room_id, user, member=True, at=at))


@receiver(room_signals.member_left, sender=Room)
def show_member_left(sender: Any, room: Room, user: Any, at: Any, **kwargs: Any) -> None:
    room_id = room.pk
    _after_commit(lambda: services.publish_membership_change(room_id, user, member=False, at=at))


@receiver(room_signals.room_deleting, sender=Room)
def forget_deleted_room(sender: Any, room: Room, **kwargs: Any) -> None:
    room_id = room.pk
    _after_commit(lambda: services.room_deleted(room_id))
