"""`manage.py relay_events`: the long-running outbox relay (see events.relay for how order is kept)."""

from __future__ import annotations

import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from events.leases import LeaseConfigurationError
from events.relay import Relay


class Command(BaseCommand):
    help = "Mirror committed outbox events to Kafka, in order per room, until SIGTERM (or, with --once, until drained)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Drain the backlog, then exit (cron, tests).")
        parser.add_argument("--batch-size", type=int, default=settings.EVENTS_RELAY_BATCH_SIZE)
        parser.add_argument("--poll-interval", type=float, default=0.2, help="Seconds between polls when idle.")
        parser.add_argument(
            "--stats-interval", type=float, default=30.0, help="Seconds between backlog/throughput log lines."
        )
        parser.add_argument("--prune-interval", type=float, default=300.0, help="Seconds between prunes of sent rows.")
        parser.add_argument(
            "--backoff-max",
            type=float,
            default=float(settings.EVENTS_RELAY_BACKOFF_MAX_SECONDS),
            help="Longest wait between attempts while Kafka is down.",
        )
        parser.add_argument(
            "--stall-restart",
            type=float,
            default=30.0,
            help="Restart the producer when the cluster answers but nothing was acknowledged for this long.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.KAFKA_BOOTSTRAP_SERVERS:
            raise CommandError("KAFKA_BOOTSTRAP_SERVERS is not set: there is no Kafka to relay to.")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        relay = Relay(
            batch_size=options["batch_size"],
            poll_interval=options["poll_interval"],
            backoff_max=options["backoff_max"],
            stats_interval=options["stats_interval"],
            prune_interval=options["prune_interval"],
            stall_restart=options["stall_restart"],
        )

        def request_stop(signum: int, _frame: Any) -> None:
            self.stderr.write(f"relay: {signal.Signals(signum).name} received, finishing the batch in flight")
            relay.stop()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.stdout.write(
            f"relay {relay.leases.name}: publishing to {settings.KAFKA_BOOTSTRAP_SERVERS} (topic prefix "
            f"{settings.KAFKA_TOPIC_PREFIX!r}, {settings.EVENTS_RELAY_PARTITIONS} outbox partitions)"
        )
        try:
            sent = relay.run(once=options["once"])
        except (RuntimeError, LeaseConfigurationError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"relay: stopped after sending {sent} events")
