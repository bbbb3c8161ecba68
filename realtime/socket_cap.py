"""The per-user socket cap (WS_MAX_SOCKETS_PER_USER): chat, presence and user sockets count together.

Embedded default (no REDIS_URL, one process): the process's own count, the hub's sockets of the user.

With Redis, the cap holds across every process: a sorted set per user, `<CHANNEL_LAYER_PREFIX>:sockets:<user
id>`, holds the ids of the user's sockets on all processes, each scored by the time its entry expires.
- A connect is one round trip: a Lua script drops the user's expired entries, counts the rest and adds this
  socket if the count is under the cap; atomic, so two processes cannot both take the last seat.
- Each process renews the entries of all its sockets every third of WS_SOCKET_CAP_TTL_SECONDS, one script call
  per RENEW_BATCH_USERS users (ZADD XX and EXPIRE per user inside Redis): no timer per socket, and no
  client-side command per user (docs/BENCHMARKS.md). A process that dies without closing its sockets
  (SIGKILL, a host gone) stops renewing, and its entries stop counting after at most the TTL.
- A close removes its entry (ZREM). Entries are scored on the processes' clocks: keep them synchronized (NTP);
  a skew only shortens or lengthens how long a dead process's sockets still count.
- Redis away: a connect falls back to the process's own count, so a socket is neither refused because Redis
  is down nor admitted past its process's cap; a socket admitted that way has no entry (renewal never adds
  one) and does not count for the other processes until it reconnects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from django.conf import settings

logger = logging.getLogger(__name__)

RENEW_BATCH_USERS = 1000  # users per pipelined round trip when a process renews its entries

TAKE_SEAT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# KEYS: the users' keys; ARGV: expires_at, the keys' TTL, then per key its count of ids and the ids.
RENEW_SEATS = """
local expires_at, ttl, i = ARGV[1], ARGV[2], 3
for k = 1, #KEYS do
    local n = tonumber(ARGV[i])
    for j = i + 1, i + n do
        redis.call('ZADD', KEYS[k], 'XX', expires_at, ARGV[j])
    end
    i = i + n + 1
    redis.call('EXPIRE', KEYS[k], ttl)
end
return #KEYS
"""


class SocketCap(Protocol):
    shared: bool  # counts across processes, and the hub renews its seats every renew_interval seconds
    renew_interval: float

    async def take_seat(self, user_id: int, socket_id: str, local_count: int) -> bool:
        """True if the user may open one more socket; then the seat is taken until `give_back_seat`."""
        ...

    async def give_back_seat(self, user_id: int, socket_id: str) -> None: ...

    async def renew(self, sockets_by_user: Mapping[int, Sequence[str]]) -> None:
        """Keep this process's seats from expiring (the hub calls it every `renew_interval` seconds)."""
        ...


class ProcessSocketCap:
    """One process: the hub's own count is the truth."""

    shared = False
    renew_interval = float("inf")

    async def take_seat(self, user_id: int, socket_id: str, local_count: int) -> bool:
        return local_count < settings.WS_MAX_SOCKETS_PER_USER

    async def give_back_seat(self, user_id: int, socket_id: str) -> None:
        return None

    async def renew(self, sockets_by_user: Mapping[int, Sequence[str]]) -> None:
        return None


class RedisSocketCap:
    """Every process: seats in a Redis sorted set per user, expiring unless their process renews them."""

    shared = True

    def __init__(self, url: str, prefix: str, ttl_seconds: float) -> None:
        from redis.asyncio import Redis

        self.redis: Any = Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        self.prefix = prefix
        self.ttl = float(ttl_seconds)
        self._take = self.redis.register_script(TAKE_SEAT)
        self._renew = self.redis.register_script(RENEW_SEATS)

    @property
    def renew_interval(self) -> float:
        return self.ttl / 3

    def key(self, user_id: int) -> str:
        return f"{self.prefix}:sockets:{user_id}"

    async def take_seat(self, user_id: int, socket_id: str, local_count: int) -> bool:
        now = time.time()
        cap = settings.WS_MAX_SOCKETS_PER_USER
        try:
            taken = await self._take(
                keys=[self.key(user_id)], args=[now, now + self.ttl, cap, socket_id, int(self.ttl * 2) + 1]
            )
        except Exception as exc:  # noqa: BLE001 - Redis away: the process's own count decides
            logger.warning("socket cap: Redis unavailable (%s); counting this process's sockets only", exc)
            return local_count < cap
        return bool(taken)

    async def give_back_seat(self, user_id: int, socket_id: str) -> None:
        try:
            await self.redis.zrem(self.key(user_id), socket_id)
        except Exception as exc:  # noqa: BLE001 - the entry expires by itself
            logger.warning("socket cap: could not give a seat back (%s); it expires by itself", exc)

    async def renew(self, sockets_by_user: Mapping[int, Sequence[str]]) -> None:
        expires_at = time.time() + self.ttl
        users = [(user_id, ids) for user_id, ids in sockets_by_user.items() if ids]
        for start in range(0, len(users), RENEW_BATCH_USERS):
            keys: list[str] = []
            args: list[Any] = [expires_at, int(self.ttl * 2) + 1]
            for user_id, ids in users[start : start + RENEW_BATCH_USERS]:
                keys.append(self.key(user_id))
                args.append(len(ids))
                args.extend(ids)  # only seats taken (XX): never re-adds one given back
            await self._renew(keys=keys, args=args)


def new_socket_cap() -> SocketCap:
    """Chosen by settings: shared through Redis when there is one, else the process's own count."""
    if settings.REDIS_URL:
        return RedisSocketCap(settings.REDIS_URL, settings.CHANNEL_LAYER_PREFIX, settings.WS_SOCKET_CAP_TTL_SECONDS)
    return ProcessSocketCap()
