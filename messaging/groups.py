"""Channel-layer group names. Only room hubs (one channel per process) are members of these groups."""

from __future__ import annotations


def room_group(room_id: int) -> str:
    return f"room.{room_id}"
