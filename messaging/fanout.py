"""Publishing side of the fan-out: one channel-layer message per room event, read by each process's hub.

Called after commit (transaction.on_commit) from sync code, in a worker thread under ASGI or in a plain
thread (management commands, admin). A publish that fails is logged and not retried: every message is in the
database, and each hub fills a gap in the seq stream from there, so a lost publish delays, never loses.

Under ASGI the publish is handed to the server's event loop and not waited for: a send's worker thread (and
so its ack) must not wait until the loop has finished a fan-out burst and the Redis round trip. Order is not
needed here: hubs order a room's stream by seq.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer

from .groups import room_group

logger = logging.getLogger(__name__)


async def _publish(layer: Any, group: str, event: dict[str, Any]) -> None:
    try:
        await layer.group_send(group, event)
    except Exception:  # noqa: BLE001 - the database holds the truth; hubs recover from it
        logger.exception("publish to %s failed; hubs will fill the gap from the database", group)


_in_flight: set[Any] = set()  # strong references: the loop keeps only weak ones to its tasks


def _start_publish(loop: Any, layer: Any, group: str, event: dict[str, Any]) -> None:
    task = loop.create_task(_publish(layer, group, event))
    _in_flight.add(task)
    task.add_done_callback(_in_flight.discard)


def _serving_loop() -> Any:
    """The event loop of the ASGI server when this thread is one of its sync_to_async workers, else None."""
    threadlocal = SyncToAsync.threadlocal
    if getattr(threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    loop = getattr(threadlocal, "main_event_loop", None)
    return loop if loop is not None and loop.is_running() else None


def _group_send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _serving_loop()
    if loop is not None:
        loop.call_soon_threadsafe(_start_publish, loop, layer, group, event)
        return
    async_to_sync(_publish)(layer, group, event)


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
    await _publish(
        layer,
        room_group(room_id),
        {"type": "room.frame", "room_id": room_id, "frame": frame, "exclude_user_id": exclude_user_id},
    )
