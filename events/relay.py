"""The outbox relay: mirrors committed outbox rows to Kafka, at least once, in order per room.

How order per room holds:
- Rows of one room get their ids while the room row is locked, so within a room id order is commit order.
  Rows of different rooms may commit out of id order, so the relay never keeps a "highest sent id"
  watermark: every batch selects the rows that are still unsent, in id order.
- Every batch produces rows in id order with the idempotent producer (enable.idempotence, acks=all), key =
  room id, so one room's rows land in one partition, and the producer's own retries neither duplicate nor
  reorder them. A row is marked sent only after its delivery report succeeded, and within a room only the
  delivered prefix is marked: a room whose row failed stops there, and the next batch starts again from its
  first unsent row (a later row that did get through is sent again; consumers dedupe by event_id). Until that
  row is through, batches take only it from its room, so a room stuck behind a row Kafka keeps refusing does
  not fill the batches of everyone else.
- Several relays publish at once, each the rooms of the outbox partitions it leases (events.leases: room id
  modulo EVENTS_RELAY_PARTITIONS, leases in the database with an epoch as fencing token, renewed every third
  of EVENTS_RELAY_LEASE_SECONDS, taken over after a crashed owner's expiry plus a grace). One room is in one
  partition, so one relay at a time publishes it; the marking transaction re-checks the leases.

Why produced messages never time out (message.timeout.ms=0): librdkafka documents that messages timing out
while the broker is away can leave a gap (1, 4, 5 written; 2, 3 failed). Re-sending 2 and 3 would then put them
after 4 and 5 for a consumer. Without a timeout, the idempotent producer keeps retrying in order until the broker
answers again; the errors that remain (fatal producer errors, a purge at shutdown, a vanished topic) fail a
message together with everything queued behind it, so what was delivered is always a prefix per partition.
A Kafka outage of any length therefore costs nothing but time: the batch in flight waits (logging every few
seconds what it waits for, re-creating topics a restarted cluster lost), nothing is marked sent meanwhile, and
a batch that cannot even start (cluster unreachable) is retried with exponential backoff.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from django.conf import settings
from django.db import Error as DatabaseFailure  # DatabaseError and InterfaceError (a closed connection)
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from .kafka import ensure_topics, new_producer
from .leases import PartitionLeases, partition_of, rows_in_partitions
from .models import OutboxEvent
from .services import in_lock_order, outbox_backlog, prune_sent_events
from .topics import ALL_TOPICS, kafka_topic_name

logger = logging.getLogger("events.relay")

NOT_REPORTED = "no delivery report"
STALL_LOG_SECONDS = 5.0  # while a batch waits for the broker: a log line (and a topic check) this often
MAX_HELD_ROOMS = 1000  # beyond this many held-back rooms (an outage, not a bad row), select plainly


def plan_marks(rows: Iterable[tuple[int, str]], outcomes: dict[int, str | None]) -> tuple[list[int], dict[int, str]]:
    """Which rows may be marked sent, given (id, key) in id order and each row's delivery outcome.

    outcomes: id -> None (delivered) or an error text; a missing id was not produced or not reported.
    Per key only the delivered prefix counts; the first failure of each key is returned with its error.
    """
    sent: list[int] = []
    failures: dict[int, str] = {}
    stopped: set[str] = set()
    for row_id, key in rows:
        if key in stopped:
            continue
        if row_id in outcomes and outcomes[row_id] is None:
            sent.append(row_id)
        else:
            stopped.add(key)
            failures[row_id] = outcomes.get(row_id) or NOT_REPORTED
    return sent, failures


def backoff_seconds(failures: int, maximum: float) -> float:
    """Exponential backoff with jitter: 0.5, 1, 2, 4 ... s, capped at `maximum`."""
    return min(maximum, 0.5 * 2 ** max(0, failures - 1)) * random.uniform(0.8, 1.0)  # noqa: S311


@dataclass
class BatchResult:
    selected: int = 0
    sent: int = 0
    error: str | None = None
    stalled_seconds: float = 0.0  # how long the batch waited for a broker that did not answer


@dataclass
class RelayStats:
    sent_total: int = 0
    sent_since_report: int = 0
    last_report: float = field(default_factory=time.monotonic)
    last_prune: float = float("-inf")  # never pruned: the first housekeeping prunes (monotonic starts near 0 at boot)


class Relay:
    """The relay loop; `run()` until `stop()`, or `run(once=True)` to drain the backlog and return."""

    def __init__(
        self,
        *,
        batch_size: int | None = None,
        poll_interval: float = 0.2,
        backoff_max: float | None = None,
        stats_interval: float = 30.0,
        prune_interval: float = 300.0,
        stop_grace: float = 5.0,
        stall_restart: float = 30.0,
        producer_factory: Callable[[], Producer] | None = None,
    ) -> None:
        self.batch_size = batch_size or settings.EVENTS_RELAY_BATCH_SIZE
        self.poll_interval = poll_interval
        self.backoff_max = float(backoff_max if backoff_max is not None else settings.EVENTS_RELAY_BACKOFF_MAX_SECONDS)
        self.stats_interval = stats_interval
        self.prune_interval = prune_interval
        self.stop_grace = stop_grace
        self.stall_restart = stall_restart
        self.producer_factory = producer_factory or self._default_producer
        self.leases = PartitionLeases(
            partition_count=settings.EVENTS_RELAY_PARTITIONS, lease_seconds=settings.EVENTS_RELAY_LEASE_SECONDS
        )
        self.stats = RelayStats()
        self._stop = threading.Event()
        self._stop_requested_at: float | None = None
        self._producer: Producer | None = None
        self._known_topics: set[str] = set()
        self._next_lease_round = float("-inf")
        self._contract_topics_at = float("-inf")  # when the contract topics may be tried again; inf once created
        self._once = False
        self._held: dict[str, int] = {}  # key -> its first unsent row, which failed
        self._last_holdback_log = 0.0
        self.last_client_error = ""

    # --- lifecycle ----------------------------------------------------------------------------------
    def stop(self) -> None:
        """Finish the batch in flight (its delivery reports, up to stop_grace seconds), then return from run()."""
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, once: bool = False) -> int:
        """Relay until stopped (or, with once, until the backlog is empty). Returns the number of events sent.

        With once, a failed attempt raises instead of retrying: cron and tests want the error.
        """
        self._once = once
        self.leases.prepare()
        failures = 0
        outage_started: float | None = None
        waiting_logged = False
        backlog = outbox_backlog()
        logger.info(
            "relay %s: starting; backlog %d pending, oldest %s s",
            self.leases.name,
            backlog["pending"],
            backlog["oldest_age_seconds"],
        )
        try:
            while not self.stopping:
                try:
                    self._create_contract_topics()
                    if not self._lease_partitions():
                        if once:
                            # Those relays drain the outbox: nothing for a cron run to do.
                            logger.info("relay: other relays lease every outbox partition and publish; exiting")
                            break
                        if not waiting_logged:
                            logger.info("relay: standing by, other relays lease every outbox partition")
                            waiting_logged = True
                        self._stop.wait(self.leases.renew_interval)
                        continue
                    if waiting_logged:
                        logger.info("relay: leased partitions, publishing")
                        waiting_logged = False
                    result = self.relay_batch()
                except DatabaseFailure as exc:
                    failures += 1
                    delay = backoff_seconds(failures, self.backoff_max)
                    logger.warning("relay: database error: %s; retrying in %.1f s", str(exc).strip()[:300], delay)
                    self._reset_publishing(reconnect=True)
                    if once:
                        raise
                    self._stop.wait(delay)
                    continue
                if result.error is not None and self.stopping:
                    logger.info(
                        "relay: stopping; %d events of the batch in flight stay unsent in the outbox",
                        result.selected - result.sent,
                    )
                    break
                if result.error is not None and result.sent > 0:
                    # The cluster takes events: only some room is held back behind a row it refused. No backoff
                    # for everyone else; that row is retried with the next batch.
                    now = time.monotonic()
                    if now - self._last_holdback_log >= STALL_LOG_SECONDS:
                        self._last_holdback_log = now
                        logger.warning(
                            "relay: a room's events are held back behind a row Kafka refused (%s); retrying",
                            result.error,
                        )
                    self._housekeeping()
                    continue
                if result.error is not None:
                    failures += 1
                    outage_started = outage_started or time.monotonic() - result.stalled_seconds
                    delay = backoff_seconds(failures, self.backoff_max)
                    logger.warning(
                        "relay: kafka unavailable (%s); %d events waiting in this batch, nothing marked sent "
                        "past the failure; attempt %d failed, retrying in %.1f s",
                        result.error,
                        result.selected - result.sent,
                        failures,
                        delay,
                    )
                    if once:
                        raise RuntimeError(f"kafka unavailable: {result.error}")
                    self._stop.wait(delay)
                    continue
                if outage_started is not None or result.stalled_seconds:
                    waited = time.monotonic() - outage_started if outage_started is not None else 0.0
                    logger.info(
                        "relay: kafka reachable again after %.1f s (%d failed attempts); catching up",
                        max(waited, result.stalled_seconds),
                        failures,
                    )
                    outage_started = None
                failures = 0
                self._housekeeping()
                if result.selected < self.batch_size:
                    if once:
                        break
                    self._stop.wait(self.poll_interval)
        finally:
            self._close_producer()
            self._reset_publishing()
            try:
                self.leases.release_all()  # nothing is in flight: the others may take our partitions at once
            except DatabaseFailure:
                pass  # they expire instead
            self.report()
        return self.stats.sent_total

    def _lease_partitions(self) -> bool:
        """A lease round when one is due (renew, rebalance); True while we hold partitions we may publish."""
        now = time.monotonic()
        if now >= self._next_lease_round or not self.leases.valid():
            result = self.leases.round(take_all=self._once)
            self._next_lease_round = now + self.leases.renew_interval
            if result.lost:
                logger.warning("relay: partitions %s were taken over by another relay", sorted(result.lost))
            if result.lost or result.gained or result.released:
                self._held.clear()  # another relay may have published meanwhile: start again from what is unsent
                logger.info(
                    "relay %s: holds %d of %d outbox partitions %s (%d live relays)",
                    self.leases.name,
                    len(result.held),
                    self.leases.partition_count,
                    sorted(result.held),
                    result.live_relays,
                )
        return self.leases.valid()

    def _reset_publishing(self, *, reconnect: bool = False) -> None:
        # Whatever is still queued in the producer must not go out late, after another relay took over.
        self._close_producer(purge=True)
        self._held.clear()  # another relay may publish meanwhile: start again from what is unsent
        self._next_lease_round = float("-inf")  # renew (or learn what we lost) before the next batch
        if reconnect:
            # A broken session cannot be reused; the next query opens a new one.
            try:
                connection.close()
            except DatabaseFailure:
                pass

    def _create_contract_topics(self) -> None:
        """Every contract topic exists from the relay's start on, so that a consumer may subscribe before the
        first event of a topic. Kafka away at start: tried again with the backoff, without holding up the outbox."""
        now = time.monotonic()
        if now < self._contract_topics_at:
            return
        try:
            self._ensure_topics(set(ALL_TOPICS))
        except KafkaException as exc:
            self._contract_topics_at = now + self.backoff_max
            logger.warning("relay: could not create the contract topics (%s); trying again later", _describe(exc))
            return
        self._contract_topics_at = float("inf")

    # --- one batch ----------------------------------------------------------------------------------
    def relay_batch(self) -> BatchResult:
        """Produce the oldest unsent rows, wait for their delivery reports, mark the delivered prefix per room."""
        selected = list(self._unsent_rows().values_list("id", "topic", "key", "payload", "room_id")[: self.batch_size])
        partitions = {row[0]: partition_of(row[4], self.leases.partition_count) for row in selected}
        rows = [(row_id, topic, key, payload) for row_id, topic, key, payload, _room in selected]
        result = BatchResult(selected=len(rows))
        if not rows:
            return result
        try:
            self._ensure_topics({topic for _id, topic, _key, _payload in rows})
            producer = self._get_producer()
        except KafkaException as exc:
            self._close_producer(purge=True)
            result.error = _describe(exc)
            return result
        outcomes: dict[int, str | None] = {}
        stopped_keys: set[str] = set()
        for row_id, topic, key, payload in rows:
            if key in stopped_keys:
                continue  # never send a later event of a room before an earlier one that failed
            if not self._produce(producer, row_id, topic, key, payload, outcomes):
                stopped_keys.add(key)
        unreported, result.stalled_seconds = self._wait_for_reports(producer, {topic for _i, topic, _k, _p in rows})
        sent_ids, failures = plan_marks(((row_id, key) for row_id, _t, key, _p in rows), outcomes)
        sent_ids = self._mark(sent_ids, failures, partitions)
        self._hold_back(rows, sent_ids, failures)
        result.sent = len(sent_ids)
        self.stats.sent_total += len(sent_ids)
        self.stats.sent_since_report += len(sent_ids)
        if failures or unreported:
            # A fresh producer (new producer id, empty queue) is the clean start after any failure, and a
            # restarted broker may have lost our topics.
            self._close_producer(purge=True)
            self._known_topics.clear()
            result.error = next(iter(failures.values()), NOT_REPORTED)
        return result

    def _unsent_rows(self) -> QuerySet[OutboxEvent]:
        """Unsent rows in id order; of a held-back room only its first unsent row, so that a room stuck behind
        a row Kafka keeps refusing cannot fill every batch and stall the other rooms."""
        rows = rows_in_partitions(
            OutboxEvent.objects.filter(sent_at__isnull=True).order_by("id"),
            self.leases.held,
            self.leases.partition_count,
        )
        if not self._held:
            return rows
        still_unsent = set(
            OutboxEvent.objects.filter(id__in=self._held.values(), sent_at__isnull=True).values_list("id", flat=True)
        )
        self._held = {key: row_id for key, row_id in self._held.items() if row_id in still_unsent}
        if not self._held or len(self._held) > MAX_HELD_ROOMS:
            return rows
        return rows.exclude(Q(key__in=list(self._held)) & ~Q(id__in=list(self._held.values())))

    def _hold_back(self, rows: list[tuple[int, str, str, Any]], sent_ids: list[int], failures: dict[int, str]) -> None:
        sent = set(sent_ids)
        for _row_id, _topic, key, _payload in rows:
            if self._held.get(key) in sent:
                del self._held[key]
        keys = {row_id: key for row_id, _t, key, _p in rows}
        for row_id in failures:
            self._held[keys[row_id]] = row_id

    def _produce(
        self, producer: Producer, row_id: int, topic: str, key: str, payload: Any, outcomes: dict[int, str | None]
    ) -> bool:
        def on_delivery(err: KafkaError | None, _msg: Any, row_id: int = row_id) -> None:
            outcomes[row_id] = None if err is None else _describe(err)

        value = json.dumps(payload, separators=(",", ":")).encode()
        for _attempt in range(50):
            try:
                producer.produce(
                    kafka_topic_name(topic), key=key.encode() if key else None, value=value, on_delivery=on_delivery
                )
                producer.poll(0)
                return True
            except BufferError:
                producer.poll(0.1)  # the local queue is full: serve delivery reports, then try again
            except KafkaException as exc:
                outcomes[row_id] = _describe(exc)
                return False
        outcomes[row_id] = "local producer queue stayed full"
        return False

    def _wait_for_reports(self, producer: Producer, topics: set[str]) -> tuple[int, float]:
        """Serve delivery reports until every produced row has one; only a stop request cuts the wait short.

        Returns (rows that never got a report, seconds spent waiting on an unresponsive broker).
        """
        started = last_progress = last_log = time.monotonic()
        last_remaining = len(producer)
        stalled = 0.0
        while (remaining := len(producer)) > 0:
            now = time.monotonic()
            if remaining < last_remaining:
                last_progress, last_remaining = now, remaining
            if self._stop_requested_at is not None:
                # Finish a batch that is moving; do not wait on a broker that is away.
                idle_since = max(last_progress, self._stop_requested_at)
                if now >= self._stop_requested_at + self.stop_grace or now - idle_since >= 1.0:
                    break
            elif now - last_progress >= STALL_LOG_SECONDS:
                stalled = now - started
                if now - last_log >= STALL_LOG_SECONDS:
                    last_log = now
                    logger.warning(
                        "relay: kafka unavailable: %d events of this batch unacknowledged for %.0f s (%s); "
                        "nothing is marked sent until the broker acknowledges them",
                        remaining,
                        now - started,
                        self.last_client_error or "no answer",
                    )
                    cluster_answers = self._recreate_lost_topics(topics)
                    if self._once and now - last_progress >= self.stall_restart:
                        logger.warning("relay: --once gives up waiting for the broker after %.0f s", now - started)
                        break
                    if cluster_answers and now - last_progress >= self.stall_restart:
                        # The cluster answers, yet nothing moves: e.g. a broker that lost its state refuses our
                        # producer id forever. A fresh producer is the way out; what it sends again is deduped.
                        logger.warning(
                            "relay: the cluster answers but %d events stayed unacknowledged for %.0f s; "
                            "restarting the producer",
                            remaining,
                            now - last_progress,
                        )
                        break
            if not self._keep_leases_while_waiting(now, remaining):
                break
            producer.flush(0.5)
        remaining = len(producer)
        if remaining:
            producer.purge()
            producer.poll(0)
        return remaining, stalled

    def _keep_leases_while_waiting(self, now: float, remaining: int) -> bool:
        """Renew (never rebalance) while a batch waits for the broker; False once a lease is lost or may have
        expired: the batch stops and its unacknowledged rows are purged, before the new owner may start."""
        if now >= self._next_lease_round:
            self._next_lease_round = now + self.leases.renew_interval
            try:
                lost = self.leases.round(rebalance=False).lost
            except DatabaseFailure as exc:
                logger.warning("relay: could not renew the partition leases: %s", str(exc).strip()[:200])
                lost = set()
            if lost:
                logger.warning("relay: partitions %s were taken over while a batch waited", sorted(lost))
                return False
        if not self.leases.valid():
            logger.warning(
                "relay: the partition leases could not be renewed in time; purging %d unacknowledged events",
                remaining,
            )
            return False
        return True

    def _recreate_lost_topics(self, topics: set[str]) -> bool:
        """A restarted cluster may have lost our topics; queued messages wait for them to exist again.

        Returns whether the cluster answered.
        """
        try:
            for name in ensure_topics(sorted(topics), timeout=2.0):
                logger.warning("relay: topic %s was missing on the cluster; re-created it", name)
        except KafkaException:
            return False  # still unreachable: keep waiting
        return True

    def _mark(self, sent_ids: list[int], failures: dict[int, str], partitions: dict[int, int]) -> list[int]:
        """Mark the delivered rows sent, and count the failures, of the partitions still ours; returns the rows
        marked. A partition lost meanwhile is left to its new owner, which sends its unmarked rows again."""
        now = timezone.now()
        involved = {partitions[row_id] for row_id in [*sent_ids, *failures]}
        with transaction.atomic():
            # The fencing check: owner, epoch and expiry of our leases, locked until the marks are written.
            confirmed = self.leases.confirm(involved)
            sent_ids = [row_id for row_id in sent_ids if partitions[row_id] in confirmed]
            failures = {row_id: error for row_id, error in failures.items() if partitions[row_id] in confirmed}
            if sent_ids:
                unmarked = OutboxEvent.objects.filter(id__in=sent_ids, sent_at__isnull=True)
                OutboxEvent.objects.filter(pk__in=in_lock_order(unmarked)).update(
                    sent_at=now, attempts=F("attempts") + 1, last_error=""
                )
            for row_id, error in failures.items():
                OutboxEvent.objects.filter(id=row_id).update(attempts=F("attempts") + 1, last_error=error[:1000])
        lost = involved - confirmed
        if lost:
            logger.warning(
                "relay: lost partitions %s before marking their rows; their new owner sends them", sorted(lost)
            )
            self.leases.forget(lost)
            self._reset_publishing()
        return sent_ids

    # --- kafka clients ------------------------------------------------------------------------------
    def _default_producer(self) -> Producer:
        return new_producer(error_cb=self._on_client_error, logger=logging.getLogger("events.librdkafka"))

    def _on_client_error(self, error: KafkaError) -> None:
        """librdkafka's client-level errors (broker down, all brokers down): kept for the stall log lines."""
        self.last_client_error = _describe(error)
        if error.fatal():
            logger.warning("relay: kafka producer fatal error: %s", self.last_client_error)

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = self.producer_factory()
        return self._producer

    def _close_producer(self, *, purge: bool = False) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        if purge:
            producer.purge()
        producer.flush(0 if purge else self.stop_grace)

    def _ensure_topics(self, topics: set[str]) -> None:
        missing = topics - self._known_topics
        if not missing:
            return
        created = ensure_topics(sorted(missing), timeout=5.0)
        for name in created:
            logger.info("relay: created topic %s (%d partitions)", name, settings.KAFKA_TOPIC_PARTITIONS)
        self._known_topics |= missing

    # --- housekeeping -------------------------------------------------------------------------------
    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self.stats.last_prune >= self.prune_interval:
            self.stats.last_prune = now
            try:
                pruned = prune_sent_events(older_than=timezone.now() - settings.EVENTS_RETENTION)
            except DatabaseFailure as exc:
                # Pruning can wait for its next round; a relay must not die of it (its session was killed, the
                # database restarted). The broken connection is replaced at the next query.
                logger.warning("relay: pruning failed: %s; trying again later", str(exc).strip()[:300])
                connection.close()
                pruned = 0
            if pruned:
                logger.info("relay: pruned %d sent events older than %s", pruned, settings.EVENTS_RETENTION)
        if now - self.stats.last_report >= self.stats_interval:
            self.report()

    def report(self) -> None:
        """One log line: throughput since the last report, backlog size and the age of its oldest event."""
        now = time.monotonic()
        elapsed = max(now - self.stats.last_report, 1e-6)
        try:
            backlog = outbox_backlog()
        except DatabaseFailure as exc:
            backlog = {"pending": "?", "oldest_age_seconds": f"? ({str(exc).strip()[:100]})"}
        logger.info(
            "relay: sent %d events in %.1f s (%.0f/s), %d in total; backlog %s pending, oldest %s s",
            self.stats.sent_since_report,
            elapsed,
            self.stats.sent_since_report / elapsed,
            self.stats.sent_total,
            backlog["pending"],
            backlog["oldest_age_seconds"],
        )
        self.stats.sent_since_report = 0
        self.stats.last_report = now


def _describe(error: KafkaError | KafkaException) -> str:
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        error = error.args[0]
    if isinstance(error, KafkaError):
        return f"{error.name()}: {error.str()}"
    return str(error)
