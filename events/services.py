"""The outbox: the one way a domain change becomes an event.

Services call `record_event` inside the transaction that makes the change, so an event exists if and only if
its change committed. The relay (events.relay) mirrors rows to Kafka; with no KAFKA_BOOTSTRAP_SERVERS the rows
simply stay here (the embedded default), visible in the admin.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Min, QuerySet
from django.utils import timezone

from .models import OutboxEvent
from .topics import topic_for

EVENT_VERSION = 1


def build_envelope(
    *, event_id: uuid.UUID, event_type: str, room_id: int | None, occurred_at: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    """The contract's Kafka value: {event_id, type, version, occurred_at, room_id, data}."""
    return {
        "event_id": str(event_id),
        "type": event_type,
        "version": EVENT_VERSION,
        "occurred_at": occurred_at.isoformat(),
        "room_id": room_id,
        "data": data,
    }


def record_event(
    event_type: str, *, room_id: int | None, data: dict[str, Any], occurred_at: datetime | None = None
) -> OutboxEvent:
    """Write one event into the outbox. Must run inside the transaction of the change it describes."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError(
            f"record_event({event_type!r}) outside a transaction: the event could outlive a rolled-back change"
        )
    occurred_at = occurred_at or timezone.now()
    event_id = uuid.uuid4()
    return OutboxEvent.objects.create(
        event_id=event_id,
        topic=topic_for(event_type),
        key=str(room_id) if room_id is not None else "",
        event_type=event_type,
        room_id=room_id,
        payload=build_envelope(
            event_id=event_id, event_type=event_type, room_id=room_id, occurred_at=occurred_at, data=data
        ),
        occurred_at=occurred_at,
    )


@dataclass(frozen=True)
class PayloadSQL:
    """A piece of SQL over the `payload` column of stored events, with its parameters (`%s` placeholders)."""

    sql: str
    params: list[Any]


def rewrite_events(room_id: int, since: datetime, matching: PayloadSQL, payload: PayloadSQL) -> int:
    """Set the payload of a room's stored events (pending or already relayed) written since `since` that
    `matching` selects to `payload`, which the database computes from each row: one UPDATE, no row read
    into Python.

    For content that must not outlive its deletion: an outbox row still waiting for Kafka must not carry a
    deleted body there, and a relayed row kept for the admin must not show it. Must run inside the
    transaction of the change. What Kafka already holds is the consumers' to redact on the deletion event
    (docs/API.md). Returns how many rows matched. The rows are locked in id order, as in_lock_order locks
    them for the relay. The statement is written once, not built by the ORM: compiling it (a subquery with
    its ordering and lock) was a large share of a deletion's CPU.
    """
    table = connection.ops.quote_name(OutboxEvent._meta.db_table)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    sql = (
        f"UPDATE {table} SET payload = {payload.sql} WHERE id IN ("  # noqa: S608 - our table, our SQL
        f"SELECT id FROM {table} WHERE room_id = %s AND occurred_at >= %s AND ({matching.sql}) ORDER BY 1 ASC{lock})"
    )
    with connection.cursor() as cursor:
        since_value = connection.ops.adapt_datetimefield_value(since)  # as the ORM stores it (SQLite: text)
        cursor.execute(sql, [*payload.params, room_id, since_value, *matching.params])
        return cursor.rowcount


def in_lock_order(rows: QuerySet[OutboxEvent]) -> QuerySet[OutboxEvent]:
    """The ids of `rows`, locked in id order, as a subquery for an UPDATE (still one statement).

    Every writer of outbox rows that may overlap (a deletion's redaction in rewrite_events, the relay marking rows sent) locks
    them in the same order, so two of them cannot each hold a row the other waits for (a deadlock, which
    PostgreSQL would end by failing one of the two transactions). SQLite locks the whole database instead.
    """
    return rows.order_by("pk").select_for_update().values("pk")


def outbox_backlog() -> dict[str, Any]:
    """Backlog size and the age of its oldest event, for /readyz, /metrics and the relay's output."""
    pending = OutboxEvent.objects.filter(sent_at__isnull=True)
    stats = pending.aggregate(oldest=Min("occurred_at"))
    oldest = stats["oldest"]
    return {
        "pending": pending.count(),
        "oldest_age_seconds": round((timezone.now() - oldest).total_seconds(), 3) if oldest else 0.0,
    }


def prune_sent_events(*, older_than: datetime, chunk: int = 5000) -> int:
    """Delete rows sent before `older_than`, in chunks so that no statement holds locks for long."""
    deleted = 0
    while True:
        ids = list(
            OutboxEvent.objects.filter(sent_at__lt=older_than).order_by("id").values_list("id", flat=True)[:chunk]
        )
        if not ids:
            return deleted
        deleted += OutboxEvent.objects.filter(id__in=ids).delete()[0]
