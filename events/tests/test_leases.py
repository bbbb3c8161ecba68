"""Partition leases (events.leases) on the database alone: how relays divide the outbox and take it over."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from events.leases import (
    LeaseConfigurationError,
    PartitionLeases,
    fair_share,
    partition_of,
    rows_in_partitions,
)
from events.models import OutboxEvent, RelayLease, RelayMember
from events.services import record_event

pytestmark = pytest.mark.django_db(transaction=True)


def leases(name: str, count: int = 8) -> PartitionLeases:
    lease = PartitionLeases(partition_count=count, lease_seconds=10, name=name)
    lease.prepare()
    return lease


def expire(owner: str, seconds_ago: float) -> None:
    """As if `owner` stopped renewing: its leases and heartbeat ended `seconds_ago` seconds ago."""
    at = timezone.now() - timedelta(seconds=seconds_ago)
    RelayLease.objects.filter(owner=owner).update(expires_at=at)
    RelayMember.objects.filter(name=owner).update(expires_at=at)


@pytest.mark.parametrize(("count", "live", "share"), [(16, 1, 16), (16, 2, 8), (16, 3, 6), (16, 0, 16), (2, 3, 1)])
def test_fair_share_covers_every_partition(count, live, share):
    assert fair_share(count, live) == share
    assert fair_share(count, live) * max(1, live) >= count


def test_rows_in_partitions_selects_in_sql_what_partition_of_computes():
    with transaction.atomic():
        for room_id in [*range(1, 12), None]:
            record_event("room.updated", room_id=room_id, data={})
    rows = OutboxEvent.objects.all()
    for partition in range(4):
        selected = {room for room in rows_in_partitions(rows, {partition}, 4).values_list("room_id", flat=True)}
        assert selected == {r for r in [*range(1, 12), None] if partition_of(r, 4) == partition}
    assert rows_in_partitions(rows, {0, 1, 2, 3}, 4).count() == 12


def test_two_relays_divide_the_partitions_evenly_and_never_share_one():
    first, second = leases("first"), leases("second")
    assert first.round().held == set(range(8))  # alone: everything
    assert second.round().held == set()  # none is free yet
    released = first.round().released  # two live relays: the first gives up what is over its share
    assert len(released) == 4
    gained = second.round().gained
    assert gained == released
    assert first.held.isdisjoint(second.held) and first.held | second.held == set(range(8))
    owners = dict(RelayLease.objects.values_list("partition", "owner"))
    assert {p for p, o in owners.items() if o == "second"} == second.held


def test_a_crashed_relays_leases_move_only_after_expiry_and_grace_with_a_new_epoch():
    crashed, survivor = leases("crashed"), leases("survivor")
    crashed.round()
    epochs_before = dict(crashed.epochs)
    expire("crashed", seconds_ago=1)  # expired, but within the grace (5 s for a 10 s lease)
    assert survivor.round().gained == set()
    expire("crashed", seconds_ago=survivor.takeover_grace + 1)
    assert survivor.round().gained == set(range(8))
    assert all(survivor.epochs[p] == epochs_before[p] + 1 for p in range(8))
    # The fencing token: the old owner can no longer confirm (mark rows of) any partition, and learns it.
    with transaction.atomic():
        assert crashed.confirm(set(range(8))) == set()
    assert crashed.round(rebalance=False).lost == set(range(8))
    with transaction.atomic():
        assert survivor.confirm(set(range(8))) == set(range(8))


def test_a_clean_stop_frees_the_partitions_at_once():
    leaving, staying = leases("leaving"), leases("staying")
    leaving.round()
    leaving.release_all()
    assert staying.round().gained == set(range(8))
    assert not RelayMember.objects.filter(name="leaving").exists()


def test_a_relay_with_another_partition_count_is_refused_while_relays_run():
    running = leases("running", count=8)
    running.round()
    with pytest.raises(LeaseConfigurationError):
        leases("other", count=4)
    running.release_all()
    leases("other", count=4)  # nobody runs: the table is rebuilt for the new count
    assert RelayLease.objects.count() == 4


@pytest.mark.django_db
def test_a_relay_that_loses_the_race_to_create_the_lease_rows_reads_the_winners_rows(monkeypatch):
    """Two relays started together both found the table empty and both created its rows; the loser crashed
    on the unique partition (the suite's three-relay test caught it). It now reads the rows again."""
    from django.db import IntegrityError

    leases = PartitionLeases(name="late", partition_count=4, lease_seconds=10)
    real = leases._prepare_rows
    calls: list[int] = []

    def racing() -> None:
        calls.append(1)
        if len(calls) == 1:
            PartitionLeases(name="early", partition_count=4, lease_seconds=10).prepare()  # the winner, a moment before
            raise IntegrityError('duplicate key value violates unique constraint "events_relaylease_pkey"')
        real()

    monkeypatch.setattr(leases, "_prepare_rows", racing)
    leases.prepare()
    assert len(calls) == 2
    assert sorted(RelayLease.objects.values_list("partition", flat=True)) == [0, 1, 2, 3]
