"""Where a room's live stream reads back what the hub missed: messaging writes every seq'd event."""

from __future__ import annotations

from typing import Any

from realtime.sockets import in_worker_thread
from rooms.models import Room

from .services import frames_between


def _last_seq(room_id: int) -> int | None:
    return Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).first()


def _last_seqs(room_ids: list[int]) -> dict[int, int]:
    return dict(Room.objects.filter(pk__in=room_ids).values_list("id", "last_seq"))


def _frames_between(room_id: int, after_seq: int, up_to_seq: int) -> list[tuple[int, dict[str, Any], int | None]]:
    """(seq, frame, visible_seq): a change of a message carries that message's seq, as its live publish does,
    so that a socket whose member may not read the message drops the change (history visibility)."""
    return [
        (seq, frame, frame["message"]["seq"] if frame.get("type") == "message.updated" else None)
        for seq, frame in frames_between(room_id=room_id, after_seq=after_seq, up_to_seq=up_to_seq)
    ]


class RoomEventSource:
    """realtime.streams.StreamSource over the rooms' seq and the stored messages."""

    last_seq = staticmethod(in_worker_thread(_last_seq))
    last_seqs = staticmethod(in_worker_thread(_last_seqs))
    frames_between = staticmethod(in_worker_thread(_frames_between))
