from __future__ import annotations

import uuid

from django.db import models


class OutboxEvent(models.Model):
    """An event written in the same transaction as the change it describes; the relay mirrors it to Kafka.

    Rows of one room are inserted while that room's row is locked, so their id order is their commit order,
    which is what keeps per-room order on the way to Kafka.
    """

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    topic = models.CharField(max_length=100)
    key = models.CharField(max_length=100)
    event_type = models.CharField(max_length=64)
    room_id = models.BigIntegerField(null=True, db_index=True)
    payload = models.JSONField()
    occurred_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["id"], name="outbox_unsent", condition=models.Q(sent_at__isnull=True)),
            models.Index(fields=["sent_at"], name="outbox_sent_at"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} room={self.room_id} {'sent' if self.sent_at else 'pending'}"


class RelayLease(models.Model):
    """Who relays one share of the outbox: partition = room id modulo `partition_count` (rows without a room: 0).

    `epoch` grows by one every time the lease changes hands; it is the fencing token a relay shows when it
    marks rows sent. `expires_at` is on the database's clock, so relays on hosts with skewed clocks agree.
    """

    partition = models.PositiveIntegerField(primary_key=True)
    partition_count = models.PositiveIntegerField()
    owner = models.CharField(max_length=64, blank=True)  # "" when free
    epoch = models.BigIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["partition"]

    def __str__(self) -> str:
        return f"partition {self.partition}/{self.partition_count} owner={self.owner or '-'} epoch={self.epoch}"


class RelayMember(models.Model):
    """A running relay's heartbeat: the live ones divide the partitions between them."""

    name = models.CharField(max_length=64, primary_key=True)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.name
