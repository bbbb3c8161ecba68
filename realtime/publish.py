"""Publishing to the hubs: one channel-layer message per event, read once by each process's hub.

Sync callers (services, in a worker thread under ASGI, or a management command) publish after their
transaction commits: a socket that reacts must already see the change in the database. A publish that fails
is logged and not retried: the database holds the truth, streams fill gaps from it and the periodic
re-check (realtime.watch) catches a lost close, so a lost publish delays, never loses.

Under ASGI the publish is handed to the server's event loop and not waited for: a send's worker thread (and
so its ack) must not wait for the loop to finish a fan-out burst and the Redis round trip. Order between
publishes is not needed: hubs order a room's stream by seq.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .groups import room_group, user_group

logger = logging.getLogger(__name__)

_in_flight: set[Any] = set()  # strong references: the loop keeps only weak ones to its tasks


async def apublish(group: str, event: dict[str, Any]) -> None:
    """From the event loop; never raises."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group, event)
    except Exception:  # noqa: BLE001 - the database holds the truth; hubs recover from it
        logger.exception("publish to %s failed; hubs will fill the gap from the database", group)


def _serving_loop() -> Any:
    """The event loop of the ASGI server when this thread is one of its sync_to_async workers, else None."""
    threadlocal = SyncToAsync.threadlocal
    if getattr(threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    loop = getattr(threadlocal, "main_event_loop", None)
    return loop if loop is not None and loop.is_running() else None


def _start(loop: Any, group: str, event: dict[str, Any]) -> None:
    task = loop.create_task(apublish(group, event))
    _in_flight.add(task)
    task.add_done_callback(_in_flight.discard)


def _publish_now(group: str, event: dict[str, Any]) -> None:
    loop = _serving_loop()
    if loop is not None:
        loop.call_soon_threadsafe(_start, loop, group, event)
    else:
        async_to_sync(apublish)(group, event)


def publish(group: str, event: dict[str, Any]) -> None:
    """From sync code: publish once the current transaction commits (at once outside one); never raises."""
    transaction.on_commit(lambda: _publish_now(group, event))


# --- the events hubs understand (realtime.hub.Hub.dispatch) -----------------------------------------
def publish_room_event(
    room_id: int, seq: int, frame: dict[str, Any], sent_at: float | None = None, visible_seq: int | None = None
) -> None:
    """A stored event with its seq: every socket of the room gets `frame` in seq order, gaps filled.

    `visible_seq`: the event is about something at that older seq (a change of an old message); a socket
    whose reader may not see that seq drops the frame (realtime knows the number, not what it means)."""
    event = {"type": "room.event", "room_id": room_id, "seq": seq, "frame": frame, "sent_at": sent_at}
    if visible_seq is not None:
        event["visible_seq"] = visible_seq
    publish(room_group(room_id), event)


def room_frame_event(room_id: int, frame: dict[str, Any], exclude_user_id: int | None) -> dict[str, Any]:
    return {"type": "room.frame", "room_id": room_id, "frame": frame, "exclude_user_id": exclude_user_id}


def publish_room_frame(room_id: int, frame: dict[str, Any], exclude_user_id: int | None = None) -> None:
    """An ephemeral frame (typing, read) for every socket of the room; never stored, not in seq order."""
    publish(room_group(room_id), room_frame_event(room_id, frame, exclude_user_id))


async def apublish_room_frame(room_id: int, frame: dict[str, Any], exclude_user_id: int | None = None) -> None:
    await apublish(room_group(room_id), room_frame_event(room_id, frame, exclude_user_id))


def publish_member_removed(room_id: int, user_id: int) -> None:
    """The user's sockets to the room close with 4403 on every process."""
    publish(room_group(room_id), {"type": "room.member_removed", "room_id": room_id, "user_id": user_id})


def publish_room_deleted(room_id: int) -> None:
    """Every socket of the room closes with 4404 on every process."""
    publish(room_group(room_id), {"type": "room.deleted", "room_id": room_id})


def publish_user_frame(user_id: int, frame: dict[str, Any]) -> None:
    """A frame for every socket of one user on every process that receives user frames (chat sockets in
    any room and the user socket), after commit: a mention, the user's room activity."""
    publish(user_group(user_id), {"type": "user.frame", "user_id": user_id, "frame": frame})


def publish_user_revoked(user_id: int, jti: str | None = None) -> None:
    """Close the user's sockets with 4401 on every process: all of them (jti None), or those authenticated
    with one access token's jti or one session's revocation id."""
    publish(user_group(user_id), {"type": "user.revoked", "user_id": user_id, "jti": jti})
