"""Rate limits per user (or per client address), counted in the shared cache.

With REDIS_URL the counters live in Redis, so a flood spread over processes is counted once. Each window's
counter is taken with one atomic increment (`cache.add` then `cache.incr`), so a burst of concurrent
requests cannot slip past the limit as a read-modify-write would. Windows are fixed and aligned to the
clock: at most `count` actions per `seconds`.

`RATE_LIMITS=off` turns every limit off. A refusal is `RateLimited`, a DomainError: REST answers 429
`rate_limited` with a Retry-After header (core.errors), GraphQL mutations answer the code as
data, the pages show it with a 429. When the cache cannot be reached the limit lets the action through:
a Redis blip must not stop chat, and the action's own service still checks everything else.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisError

from .domain import DomainError

logger = logging.getLogger(__name__)
KEY_PREFIX = "ratelimit"
CACHE_AWAY = (OSError, RedisError, ConnectionInterrupted)  # what the cache raises when Redis is away


@dataclass(frozen=True)
class Rate:
    """At most `count` actions per `seconds`."""

    count: int
    seconds: int

    @classmethod
    def burst(cls, burst: int, per_second: int) -> Rate:
        """A socket-style limit (a burst, then a rate) as a window: `burst` actions per burst/rate seconds."""
        return cls(max(1, burst), max(1, math.ceil(max(1, burst) / max(1, per_second))))


class RateLimited(DomainError):
    code = "rate_limited"
    http_status = 429
    default_detail = "Too many requests."

    def __init__(self, retry_after: int):
        self.retry_after = max(1, int(retry_after))
        super().__init__(f"Too many requests. Try again in {self.retry_after} s.")


def count_in_window(key: str, rate: Rate) -> float | None:
    """Counts one action under `key`: the seconds until its window ends when this one is over the limit,
    else None."""
    now = time.time()
    window = int(now // rate.seconds)
    window_key = f"{key}:{window}"
    cache.add(window_key, 0, rate.seconds + 1)
    try:
        count = cache.incr(window_key)
    except ValueError:  # the window's key expired between add and incr
        cache.set(window_key, 1, rate.seconds + 1)
        count = 1
    if count <= rate.count:
        return None
    return (window + 1) * rate.seconds - now


class RateLimit:
    """One named limit, e.g. RateLimit("sends", lambda: Rate(40, 2)); the rate is read at each call, so that
    settings changed at run time (tests) apply."""

    def __init__(self, scope: str, rate: Callable[[], Rate]):
        self.scope = scope
        self.rate = rate

    def hit(self, ident: int | str) -> None:
        """Counts one action of `ident` (a user id, or "ip:<address>"); raises RateLimited past the limit."""
        if not settings.RATE_LIMITS_ENABLED:
            return
        rate = self.rate()
        try:
            wait = count_in_window(f"{KEY_PREFIX}:{self.scope}:{ident}", rate)
        except CACHE_AWAY as exc:  # let the action through (see the module docstring)
            logger.warning("rate limit %s not counted: the cache is unavailable (%s)", self.scope, exc)
            return
        if wait is not None:
            raise RateLimited(math.ceil(wait))

    async def ahit(self, ident: int | str) -> None:
        """hit() for async callers (a socket consumer)."""
        await sync_to_async(self.hit, thread_sensitive=False)(ident)
