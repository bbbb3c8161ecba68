"""`manage.py bench_relay`: the relay's throughput and its commit-to-consumer lag (method: docs/BENCHMARKS.md).

Bounded and self-contained: fresh topics (KAFKA_TOPIC_PREFIX + "bench-<id>."), a room and user of its own,
deleted afterwards with every outbox row they caused. Run it against a database no other relay serves: the
partition leases are per database, and the throughput run drains every unsent row, not only its own.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from bench.fanout import percentile
from bench.progress import progress_bar
from events.consumer import ConsumedEvent, consume_events
from events.kafka import ensure_topics
from events.models import OutboxEvent
from events.relay import Relay
from events.services import record_event
from events.topics import MESSAGES
from messaging.services import send_message
from rooms.services import create_room, delete_room


class Command(BaseCommand):
    help = "Measure the outbox relay: throughput (events/s) and end-to-end lag at a steady message rate."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=int, default=20_000, help="Rows for the throughput run.")
        parser.add_argument("--batch-size", type=int, default=settings.EVENTS_RELAY_BATCH_SIZE)
        parser.add_argument("--rate", type=float, default=100.0, help="Messages per second in the lag run.")
        parser.add_argument("--duration", type=float, default=20.0, help="Seconds of the lag run.")
        parser.add_argument("--poll-interval", type=float, default=0.2, help="The lag run's relay --poll-interval.")
        parser.add_argument("--skip-throughput", action="store_true")
        parser.add_argument("--skip-lag", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = options["verbosity"]
        if not settings.KAFKA_BOOTSTRAP_SERVERS:
            raise CommandError("KAFKA_BOOTSTRAP_SERVERS is not set.")
        if not options["skip_lag"] and options["rate"] * options["duration"] < 1:
            raise CommandError("--rate × --duration must make at least one message (or --skip-lag).")
        run_id = uuid.uuid4().hex[:8]
        settings.KAFKA_TOPIC_PREFIX = f"{settings.KAFKA_TOPIC_PREFIX}bench-{run_id}."
        self.stdout.write(
            f"bench_relay: database {connection.vendor}, kafka {settings.KAFKA_BOOTSTRAP_SERVERS}, "
            f"topics {settings.KAFKA_TOPIC_PREFIX}*, {os.cpu_count()} CPUs"
        )
        first_id = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        user = User.objects.create_user(username=f"bench-relay-{run_id}", password=uuid.uuid4().hex)
        room = create_room(owner=user, title=f"bench relay {run_id}", max_personnel=10)
        try:
            ensure_topics()
            Relay(batch_size=options["batch_size"], stats_interval=3600).run(once=True)  # the room's own events
            if not options["skip_throughput"]:
                self.throughput(room.pk, options["events"], options["batch_size"])
            if not options["skip_lag"]:
                self.lag(room.pk, user, options["rate"], options["duration"], options["poll_interval"])
        finally:
            delete_room(room_id=room.pk, actor=user)
            OutboxEvent.objects.filter(id__gt=first_id, room_id=room.pk).delete()
            user.delete()

    def throughput(self, room_id: int, events: int, batch_size: int) -> None:
        self.stdout.write(f"throughput: writing {events} outbox rows ...")
        body = "x" * 80
        with progress_bar(self, total=events, desc="writing", unit="rows", verbosity=self.verbosity) as bar:
            for start in range(0, events, 1000):
                with transaction.atomic():
                    for n in range(start, min(events, start + 1000)):
                        record_event(
                            "message.created",
                            room_id=room_id,
                            data={"id": n, "room": room_id, "seq": n + 1, "kind": "TALK", "body": body},
                        )
                bar.update(min(events, start + 1000) - start)
        started = time.monotonic()
        sent = Relay(batch_size=batch_size, stats_interval=3600).run(once=True)
        elapsed = time.monotonic() - started
        self.stdout.write(
            f"throughput: relayed {sent} events in {elapsed:.2f} s = {sent / elapsed:,.0f} events/s "
            f"(batch size {batch_size})"
        )

    def lag(self, room_id: int, user: User, rate: float, duration: float, poll_interval: float) -> None:
        total = int(rate * duration)
        self.stdout.write(
            f"lag: {total} messages at {rate:g}/s through send_message, relay polling every {poll_interval} s"
        )
        env = {
            **os.environ,
            "KAFKA_TOPIC_PREFIX": settings.KAFKA_TOPIC_PREFIX,
            "PYTHONUNBUFFERED": "1",
        }
        if connection.vendor == "sqlite":
            env.setdefault("DATABASE_URL", f"sqlite:///{connection.settings_dict['NAME']}")
        relay = subprocess.Popen(
            [sys.executable, "manage.py", "relay_events", "--poll-interval", str(poll_interval)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        lags: list[float] = []
        done = threading.Event()

        def on_event(event: ConsumedEvent) -> None:
            occurred = datetime.fromisoformat(event.envelope["occurred_at"]).timestamp()
            lags.append(event.received_at - occurred)

        def read() -> None:
            consume_events(
                group=None,
                topics=[MESSAGES],
                max_events=total,
                timeout=duration + 60,
                accept=lambda envelope: (
                    envelope["room_id"] == room_id and envelope["data"].get("client_id", "").startswith("lag-")
                ),
                on_event=on_event,
                should_stop=done.is_set,
                config={"fetch.wait.max.ms": 20},  # a reader that asks often: the lag measured is the relay's
            )

        reader = threading.Thread(target=read, daemon=True)
        try:
            reader.start()
            time.sleep(1.0)  # let the relay and the reader settle
            started = time.monotonic()
            with progress_bar(self, total=total, desc="sending", unit="msg", verbosity=self.verbosity) as bar:
                for n in range(total):
                    due = started + n / rate
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    send_message(
                        room_id=room_id, sender=user, client_id=f"lag-{n}", body=f"lag probe {n} {timezone.now()}"
                    )
                    bar.update()
            send_elapsed = time.monotonic() - started
            reader.join(timeout=60)
        finally:
            done.set()
            relay.terminate()
            relay.wait(timeout=20)
        if len(lags) < total:
            raise CommandError(f"only {len(lags)} of {total} events arrived")
        acked = [
            (sent_at - occurred_at).total_seconds()
            for occurred_at, sent_at in OutboxEvent.objects.filter(
                room_id=room_id, event_type="message.created", payload__data__client_id__startswith="lag-"
            ).values_list("occurred_at", "sent_at")
        ]
        self.stdout.write(f"lag: commit to broker acknowledgement (marked sent): {spread_ms(acked)}")
        self.stdout.write(
            f"lag: {total} events sent in {send_elapsed:.1f} s ({total / send_elapsed:.0f}/s); commit to consumer "
            f"{spread_ms(lags)}, mean {statistics.mean(lags) * 1000:.0f} ms"
        )


def spread_ms(seconds: list[float]) -> str:
    """p50, p95, p99 and max of durations in seconds, as milliseconds."""
    quantiles = ", ".join(f"p{round(q * 100)} {(percentile(seconds, q) or 0) * 1000:.0f} ms" for q in (0.5, 0.95, 0.99))
    return f"{quantiles}, max {max(seconds, default=0) * 1000:.0f} ms"
