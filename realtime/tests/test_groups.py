"""Group subscriptions of a process's channel: in order per group, bounded overall, failures shared."""

from __future__ import annotations

import asyncio

from realtime.groups import GROUP_OPS_AT_ONCE, GroupSubscriptions


class SlowDiscardLayer:
    """A channel layer whose group_discard is slower than group_add, as two Redis connections can be."""

    def __init__(self) -> None:
        self.members: set[str] = set()
        self.in_flight = 0
        self.most_in_flight = 0

    async def _op(self, delay: float) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(delay)
        self.in_flight -= 1

    async def group_add(self, group: str, channel: str) -> None:
        await self._op(0)
        self.members.add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        await self._op(0.05)
        self.members.discard(group)


def test_a_rejoin_is_never_overtaken_by_the_slower_leave_before_it():
    async def scenario() -> None:
        layer = SlowDiscardLayer()
        subscriptions = GroupSubscriptions(layer, "hub.test")
        await subscriptions.add("room.1")
        leaving = asyncio.ensure_future(subscriptions.discard("room.1"))
        await asyncio.sleep(0)  # the discard is on its way
        await subscriptions.add("room.1")  # a new socket of the room arrives
        await leaving
        assert "room.1" in layer.members

    asyncio.run(scenario())


def test_group_operations_are_bounded_when_thousands_of_sockets_close_at_once():
    async def scenario() -> None:
        layer = SlowDiscardLayer()
        subscriptions = GroupSubscriptions(layer, "hub.test")
        for i in range(300):
            await subscriptions.add(f"user.{i}")
        await asyncio.gather(*(subscriptions.discard(f"user.{i}") for i in range(300)))
        assert not layer.members
        assert layer.most_in_flight <= GROUP_OPS_AT_ONCE

    asyncio.run(scenario())




class FailingAddLayer(SlowDiscardLayer):
    """Redis away: every group_add fails after a moment."""

    async def group_add(self, group: str, channel: str) -> None:
        await self._op(0.05)
        raise ConnectionError("redis is away")


def test_a_failed_add_fails_every_waiter_and_the_next_add_tries_again():
    async def scenario() -> None:
        layer = FailingAddLayer()
        subscriptions = GroupSubscriptions(layer, "hub.test")
        first = asyncio.ensure_future(subscriptions.add("room.1"))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(subscriptions.add("room.1"))  # waits on the first's add
        results = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 2)
        assert all(isinstance(r, ConnectionError) for r in results)
        assert "room.1" not in subscriptions.added
        layer.__class__ = SlowDiscardLayer  # Redis is back
        await asyncio.wait_for(subscriptions.add("room.1"), 2)
        assert "room.1" in layer.members

    asyncio.run(scenario())
