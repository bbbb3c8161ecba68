"""`manage.py consume_events`: an example consumer that prints or counts events, deduped by event_id."""

from __future__ import annotations

import json
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from events.consumer import ConsumedEvent, consume_events
from events.topics import ALL_TOPICS


class Command(BaseCommand):
    help = "Read ChatTalk's Kafka events in a consumer group; print each one (or only count), deduped by event_id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--group", default="chattalk-example", help="Consumer group id.")
        parser.add_argument("--topic", action="append", choices=ALL_TOPICS, help="Contract topic (repeatable).")
        parser.add_argument("--max-events", type=int, default=None, help="Stop after this many distinct events.")
        parser.add_argument("--timeout", type=float, default=None, help="Stop after this many seconds.")
        parser.add_argument("--count-only", action="store_true", help="Print only the summary.")
        parser.add_argument("--json", action="store_true", help="Print each event's envelope as one JSON line.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.KAFKA_BOOTSTRAP_SERVERS:
            raise CommandError("KAFKA_BOOTSTRAP_SERVERS is not set.")
        stopping = False

        def request_stop(_signum: int, _frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

        def show(event: ConsumedEvent) -> None:
            if options["count_only"]:
                return
            envelope = event.envelope
            if options["json"]:
                self.stdout.write(json.dumps(envelope, separators=(",", ":")))
            else:
                self.stdout.write(
                    f"{event.topic}[{event.partition}]@{event.offset} {envelope['type']} room={envelope['room_id']} "
                    f"event_id={envelope['event_id']} occurred_at={envelope['occurred_at']}"
                )

        result = consume_events(
            group=options["group"],
            topics=options["topic"] or ALL_TOPICS,
            max_events=options["max_events"],
            timeout=options["timeout"],
            on_event=show,
            should_stop=lambda: stopping,
        )
        summary = ", ".join(f"{kind}={count}" for kind, count in sorted(result.counts.items())) or "none"
        self.stdout.write(
            f"consumed {len(result.events)} events ({summary}); {result.duplicates} duplicates skipped, "
            f"{result.malformed} malformed"
        )
