"""Publishing side of the fan-out: one channel-layer message per room event, read by each process's hub.

Called after commit (transaction.on_commit) from sync code, in a worker thread under ASGI or in a plain
thread (management commands, admin). A publish that fails is logged and not retried: every message is in the
database, and each hub fills a gap in the seq stream from there, so a lost publish delays, never loses.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from .groups import room_group

logger = logging.getLogger(__name__)


def _group_send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception:  # noqa: BLE001 - the database holds the truth; hubs recover from it
        logger.exception("publish to %s failed; hubs will fill the gap from the database", group)


def publish_room_message(room_id: int, message: dict[str, Any]) -> None:
    _group_send(room_group(room_id), {"type": "room.message", "room_id": room_id, "message": message})


def publish_room_frame(room_id: int, frame: dict[str, Any], exclude_user_id: int | None = None) -> None:
    """An ephemeral frame (typing, read) for every socket of the room; never stored."""
    _group_send(
        room_group(room_id),
        {"type": "room.frame", "room_id": room_id, "frame": frame, "exclude_user_id": exclude_user_id},
    )


def publish_member_removed(room_id: int, user_id: int) -> None:
    _group_send(room_group(room_id), {"type": "room.member_removed", "room_id": room_id, "user_id": user_id})


def publish_room_deleted(room_id: int) -> None:
    _group_send(room_group(room_id), {"type": "room.deleted", "room_id": room_id})


async def apublish_room_frame(room_id: int, frame: dict[str, Any], exclude_user_id: int | None = None) -> None:
    """From the event loop (the chat consumer): typing and read frames."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(
            room_group(room_id),
            {"type": "room.frame", "room_id": room_id, "frame": frame, "exclude_user_id": exclude_user_id},
        )
    except Exception:  # noqa: BLE001 - ephemeral: losing a typing frame is harmless
        logger.exception("publish of an ephemeral frame to room %s failed", room_id)
