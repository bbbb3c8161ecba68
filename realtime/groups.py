"""Channel-layer groups and this process's subscriptions to them.

Only hubs (one channel per process) are members of groups: a room's group while the process holds a socket
of the room, a user's group while it holds a socket of the user.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)

GROUP_OPS_AT_ONCE = 50


def room_group(room_id: int) -> str:
    return f"room.{room_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


class GroupSubscriptions:
    """group_add/group_discard of this process's channel, at most one in flight per group and
    GROUP_OPS_AT_ONCE overall.

    Per group in order: an add must never be overtaken by an older discard. Bounded overall: thousands of
    sockets closing at once would otherwise ask the Redis pool for thousands of connections, and redis-py
    refuses past its size. A failed add fails every waiter for it, and the next add tries again.
    """

    def __init__(self, layer: Any, channel_name: str):
        self.layer = layer
        self.channel_name = channel_name
        self.added: dict[str, asyncio.Future[None]] = {}
        self._ops = asyncio.Semaphore(GROUP_OPS_AT_ONCE)
        self._tail: dict[str, asyncio.Future[None]] = {}

    async def _run(self, op: Any, group: str) -> None:
        previous = self._tail.get(group)
        done = asyncio.get_running_loop().create_future()
        self._tail[group] = done
        try:
            if previous is not None:
                await previous
            async with self._ops:
                await op(group, self.channel_name)
        finally:
            done.set_result(None)
            if self._tail.get(group) is done:
                del self._tail[group]

    async def add(self, group: str) -> None:
        added = self.added.get(group)
        if added is None:
            added = asyncio.get_running_loop().create_future()
            self.added[group] = added
            try:
                await self._run(self.layer.group_add, group)
            except BaseException as exc:
                if self.added.get(group) is added:
                    del self.added[group]
                added.set_exception(exc)
                added.exception()  # retrieved: the waiters re-raise it
                raise
            added.set_result(None)
        await asyncio.shield(added)

    async def discard(self, group: str) -> None:
        if self.added.pop(group, None) is not None:
            try:
                await self._run(self.layer.group_discard, group)
            except Exception:  # noqa: BLE001 - a stale membership only costs a dropped event
                logger.warning("could not leave group %s", group)

    async def refresh(self) -> None:
        """Add every group again: after a Redis restart, and well before channels' group expiry."""
        for group in list(self.added):
            try:
                await self._run(self.layer.group_add, group)
            except Exception:  # noqa: BLE001
                logger.warning("could not refresh group %s; will retry", group)
