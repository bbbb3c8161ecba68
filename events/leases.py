"""Partition leases: several relays publish at once, each owning a share of the outbox.

The outbox is cut into EVENTS_RELAY_PARTITIONS partitions by room id (`partition_of`); all of a room's rows
are in one partition, so one relay at a time publishes a room, and per-room order needs nothing more than
what a single relay already does (events.relay). A lease (events.models.RelayLease) names a partition's
owner until `expires_at`, on the database's clock; its `epoch` grows by one whenever it changes hands.

Rules, in the order they keep a room's events in order across a lease moving:
- A relay renews its leases every third of the lease time, in one transaction, and keeps a local deadline
  (`valid_until`): the start of its last successful round plus 80 % of the lease time. It produces nothing
  once that deadline passed and purges what its producer still holds (events.relay), so a relay cut off from
  the database stops publishing before its leases expire.
- Another relay takes an expired lease only TAKEOVER_GRACE (half the lease time) after its expiry: the old
  owner stopped at least 0.7 lease times before, time for its last requests to reach the broker.
- Marking rows sent happens in a transaction that locks the relay's leases and checks owner, epoch and
  expiry (`confirm`): a relay that lost a partition cannot mark that partition's rows (the fencing token).
- A lease given up on purpose (rebalancing, a clean stop) is handed over only between batches, with nothing
  in flight, and is free at once.
Should all of that fail (a relay frozen past every deadline whose old requests land late), what reaches
Kafka is still at least once with the first copy of every event in order per room: a row is marked sent only
after its acknowledgement, and every relay produces a room's unsent rows from the first one, in order, with
the idempotent producer. Consumers dedupe by event_id, as the contract says.

Live relays (events.models.RelayMember, renewed in the same round) divide the partitions evenly
(`fair_share`): one that holds more releases the excess between batches, one that holds fewer claims free or
expired leases. `--once` runs (cron) claim every lease that is free and release them when they are done.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, ExpressionWrapper, F, Q, QuerySet, Value
from django.db.models import DateTimeField as DateTimeOutput
from django.db.models.functions import Coalesce, Mod, Now

from .models import OutboxEvent, RelayLease, RelayMember

logger = logging.getLogger("events.relay")

VALID_FRACTION = 0.8  # of the lease time after a round's start: the owner's own deadline
GRACE_FRACTION = 0.5  # of the lease time after expiry: when another relay may take the lease over


class LeaseConfigurationError(Exception):
    """Live relays use another partition count: two relays could publish one room at once."""


def partition_of(room_id: int | None, partition_count: int) -> int:
    """The outbox partition of a room's rows; rows without a room are in partition 0."""
    return (room_id or 0) % partition_count


def rows_in_partitions(
    rows: QuerySet[OutboxEvent], partitions: set[int], partition_count: int
) -> QuerySet[OutboxEvent]:
    """`rows` restricted to the given partitions, computed as `partition_of` does, in SQL."""
    if len(partitions) >= partition_count:
        return rows
    return rows.alias(outbox_partition=Mod(Coalesce("room_id", Value(0)), Value(partition_count))).filter(
        outbox_partition__in=sorted(partitions)
    )


def fair_share(partition_count: int, live_relays: int) -> int:
    """How many partitions each of `live_relays` relays should hold (the last ones may hold fewer)."""
    return math.ceil(partition_count / max(1, live_relays))


def in_seconds(seconds: float) -> ExpressionWrapper:
    """The database's now() plus `seconds` (negative: before now)."""
    return ExpressionWrapper(Now() + Value(timedelta(seconds=seconds)), output_field=DateTimeOutput())


@dataclass
class RoundResult:
    held: set[int] = field(default_factory=set)
    gained: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)  # taken over by another relay while we thought we held them
    released: set[int] = field(default_factory=set)
    live_relays: int = 1


class PartitionLeases:
    """One relay's leases. Every method runs its own transaction on the default database."""

    def __init__(self, *, partition_count: int, lease_seconds: float, name: str | None = None) -> None:
        self.partition_count = partition_count
        self.lease_seconds = float(lease_seconds)
        self.name = name or f"relay-{uuid.uuid4().hex[:12]}"
        self.epochs: dict[int, int] = {}  # partition -> the epoch at which we took it
        self.valid_until = float("-inf")  # time.monotonic() before which our leases are certainly ours

    @property
    def held(self) -> set[int]:
        return set(self.epochs)

    @property
    def renew_interval(self) -> float:
        return self.lease_seconds / 3

    @property
    def takeover_grace(self) -> float:
        return self.lease_seconds * GRACE_FRACTION

    def valid(self) -> bool:
        return bool(self.epochs) and time.monotonic() < self.valid_until

    # --- set-up -------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Make sure the lease table has exactly `partition_count` rows; refuse if live relays count otherwise.

        Relays started together may both find the table empty (no row to lock) and both create the rows: the
        one that loses that race reads the winner's rows again instead of failing."""
        for attempt in range(3):
            try:
                self._prepare_rows()
                return
            except IntegrityError:
                if attempt == 2:
                    raise

    def _prepare_rows(self) -> None:
        with transaction.atomic():
            rows = list(RelayLease.objects.select_for_update().order_by("partition"))
            if len(rows) == self.partition_count and all(r.partition_count == self.partition_count for r in rows):
                return
            live = RelayLease.objects.filter(expires_at__gt=Now()).exclude(owner="")
            other = live.exclude(partition_count=self.partition_count).values_list("partition_count", flat=True)
            if other.exists():
                raise LeaseConfigurationError(
                    f"EVENTS_RELAY_PARTITIONS={self.partition_count} but running relays use {other.first()}: "
                    "stop every relay before changing it"
                )
            RelayLease.objects.all().delete()
            RelayLease.objects.bulk_create(
                RelayLease(partition=p, partition_count=self.partition_count) for p in range(self.partition_count)
            )

    # --- the periodic round -------------------------------------------------------------------------
    def round(self, *, rebalance: bool = True, take_all: bool = False) -> RoundResult:
        """Renew our leases; with rebalance, also release what is over our fair share and claim what is under.

        rebalance=False renews only (while a batch is in flight, nothing may change hands).
        take_all: claim every free or expired lease, whatever the share (a `--once` run).
        """
        started = time.monotonic()
        result = RoundResult()
        with transaction.atomic():
            RelayMember.objects.update_or_create(
                name=self.name, defaults={"expires_at": in_seconds(self.lease_seconds)}
            )
            result.live_relays = RelayMember.objects.filter(expires_at__gt=Now()).count()
            mine = dict(
                RelayLease.objects.select_for_update()
                .filter(owner=self.name, partition_count=self.partition_count, expires_at__gt=Now())
                .values_list("partition", "epoch")
            )
            kept = {p: e for p, e in self.epochs.items() if mine.get(p) == e}
            result.lost = set(self.epochs) - set(kept)
            if kept:
                RelayLease.objects.filter(partition__in=list(kept), owner=self.name).update(
                    expires_at=in_seconds(self.lease_seconds)
                )
            if rebalance:
                share = self.partition_count if take_all else fair_share(self.partition_count, result.live_relays)
                if len(kept) > share:
                    excess = sorted(kept)[share:]
                    RelayLease.objects.filter(partition__in=excess, owner=self.name).update(owner="", expires_at=Now())
                    for partition in excess:
                        del kept[partition]
                    result.released = set(excess)
                elif len(kept) < share:
                    result.gained = self._claim(share - len(kept), kept)
                RelayMember.objects.filter(expires_at__lt=in_seconds(-self.lease_seconds)).delete()
        self.epochs = kept
        result.held = set(kept)
        self.valid_until = started + self.lease_seconds * VALID_FRACTION
        return result

    def _claim(self, wanted: int, kept: dict[int, int]) -> set[int]:
        claimable = (
            RelayLease.objects.select_for_update(skip_locked=True)
            .filter(partition_count=self.partition_count)
            .filter(Q(owner="") | Q(expires_at__isnull=True) | Q(expires_at__lt=in_seconds(-self.takeover_grace)))
            .order_by("partition")
            .values_list("partition", flat=True)[:wanted]
        )
        partitions = list(claimable)
        if not partitions:
            return set()
        RelayLease.objects.filter(partition__in=partitions).update(
            owner=self.name, epoch=F("epoch") + 1, expires_at=in_seconds(self.lease_seconds)
        )
        kept.update(RelayLease.objects.filter(partition__in=partitions).values_list("partition", "epoch"))
        return set(partitions)

    # --- fencing ------------------------------------------------------------------------------------
    def confirm(self, partitions: set[int]) -> set[int]:
        """Inside the transaction that marks rows sent: which of `partitions` are still ours (owner, epoch,
        not expired), their rows locked against a takeover until that transaction ends."""
        if not partitions:
            return set()
        rows = (
            RelayLease.objects.select_for_update()
            .filter(partition__in=sorted(partitions), owner=self.name, expires_at__gt=Now())
            .values_list("partition", "epoch")
        )
        return {p for p, epoch in rows if self.epochs.get(p) == epoch}

    def forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.epochs.pop(partition, None)

    def release_all(self) -> None:
        """On a clean stop, with nothing in flight: the partitions are free for the others at once."""
        with transaction.atomic():
            RelayLease.objects.filter(owner=self.name).update(owner="", expires_at=Now())
            RelayMember.objects.filter(name=self.name).delete()
        self.epochs = {}
        self.valid_until = float("-inf")


def lease_overview() -> dict[str, int]:
    """Partitions per live owner, for log lines and tests."""
    rows = (
        RelayLease.objects.filter(expires_at__gt=Now())
        .exclude(owner="")
        .values("owner")
        .annotate(partitions=Count("partition"))
    )
    return {row["owner"]: row["partitions"] for row in rows}
