"""The per-user socket cap's two backends (realtime.socket_cap); the Redis one against a real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from django.conf import settings as django_settings

from realtime.socket_cap import ProcessSocketCap, RedisSocketCap


def test_the_process_cap_is_the_processs_own_count(settings):
    settings.WS_MAX_SOCKETS_PER_USER = 2
    cap = ProcessSocketCap()
    assert asyncio.run(cap.take_seat(1, "a", local_count=1))
    assert not asyncio.run(cap.take_seat(1, "b", local_count=2))


def redis_cap(ttl: float = 30, prefix: str | None = None) -> RedisSocketCap:
    return RedisSocketCap(django_settings.REDIS_URL, prefix or f"captest{uuid.uuid4().hex[:8]}", ttl)


@pytest.mark.redis
def test_concurrent_connects_of_one_user_never_take_more_seats_than_the_cap(settings):
    settings.WS_MAX_SOCKETS_PER_USER = 5

    async def scenario() -> None:
        prefix = f"captest{uuid.uuid4().hex[:8]}"
        caps = [redis_cap(prefix=prefix) for _ in range(4)]  # four processes' clients of one Redis
        taken = await asyncio.gather(*(caps[n % 4].take_seat(7, f"s{n}", local_count=0) for n in range(40)))
        assert sum(taken) == 5
        assert await caps[0].redis.zcard(caps[0].key(7)) == 5
        for cap in caps:
            await cap.redis.delete(cap.key(7))
            await cap.redis.aclose()

    asyncio.run(scenario())


@pytest.mark.redis
def test_a_seat_given_back_is_free_and_renewal_never_brings_it_back(settings):
    settings.WS_MAX_SOCKETS_PER_USER = 1

    async def scenario() -> None:
        cap = redis_cap()
        assert await cap.take_seat(8, "first", local_count=0)
        assert not await cap.take_seat(8, "second", local_count=0)
        await cap.give_back_seat(8, "first")
        await cap.renew({8: ["first"]})  # the process had not yet forgotten it: XX adds nothing
        assert await cap.take_seat(8, "second", local_count=0)
        await cap.redis.delete(cap.key(8))
        await cap.redis.aclose()

    asyncio.run(scenario())


@pytest.mark.redis
def test_seats_not_renewed_expire_and_renewed_ones_stay(settings):
    settings.WS_MAX_SOCKETS_PER_USER = 2

    async def scenario() -> None:
        cap = redis_cap(ttl=30)
        key = cap.key(9)
        assert await cap.take_seat(9, "alive", local_count=0)
        assert await cap.take_seat(9, "dead", local_count=0)
        # Both seats as if last renewed long ago (their process's clock is the one that scores them) ...
        past = time.time() - 1
        await cap.redis.zadd(key, {"alive": past, "dead": past}, xx=True)
        await cap.renew({9: ["alive"]})  # ... then only the living process renews its own.
        assert await cap.take_seat(9, "new", local_count=0)  # the dead seat was dropped on the way in
        assert set(await cap.redis.zrange(key, 0, -1)) == {b"alive", b"new"}
        await cap.redis.delete(key)
        await cap.redis.aclose()

    asyncio.run(scenario())


@pytest.mark.redis
def test_redis_away_falls_back_to_the_processs_own_count(settings):
    from core.testing import free_port

    settings.WS_MAX_SOCKETS_PER_USER = 2

    async def scenario() -> None:
        cap = RedisSocketCap(f"redis://127.0.0.1:{free_port()}/0", "away", 30)
        assert await cap.take_seat(1, "a", local_count=1)
        assert not await cap.take_seat(1, "b", local_count=2)
        await cap.give_back_seat(1, "a")  # no error either
        await cap.redis.aclose()

    asyncio.run(scenario())
