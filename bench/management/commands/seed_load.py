"""Fill an install with load data: users, rooms with members, and history. Idempotent: counts are targets."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from bench import seeding
from bench.progress import StageProgress
from rooms.models import MAX_MAX_PERSONNEL

DEFAULT_PASSWORD = "load-password-1"


class Command(BaseCommand):
    help = (
        "Seed N users, M rooms with R members each and K messages spread over the rooms, in bulk. "
        "Counts are targets: a second run with the same arguments adds nothing (idempotent)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--users", type=int, required=True)
        parser.add_argument("--rooms", type=int, required=True)
        parser.add_argument("--messages", type=int, default=0, help="total messages across the seeded rooms")
        parser.add_argument("--members-per-room", type=int, default=20)
        parser.add_argument("--reset", action="store_true", help="delete earlier seeded data first")
        parser.add_argument("--user-prefix", default="load-")
        parser.add_argument("--room-prefix", default="Load room ")
        parser.add_argument("--password", default=DEFAULT_PASSWORD, help="the password of every seeded user")

    def handle(self, *args: Any, **options: Any) -> None:
        users, rooms, messages = options["users"], options["rooms"], options["messages"]
        per_room = options["members_per_room"]
        if users < 1 or rooms < 0 or messages < 0 or per_room < 1:
            raise CommandError(
                "--users must be at least 1; --rooms, --messages at least 0; --members-per-room at least 1"
            )
        if per_room > MAX_MAX_PERSONNEL:
            raise CommandError(f"--members-per-room cannot exceed a room's limit of {MAX_MAX_PERSONNEL:,}")
        user_prefix, room_prefix = options["user_prefix"], options["room_prefix"]
        started = time.monotonic()
        self.stdout.write(f"seeding on {connection.vendor} ({connection.settings_dict.get('NAME')})")
        if options["reset"]:
            deleted = seeding.delete_seeded(user_prefix, room_prefix)
            self.stdout.write("reset: deleted " + ", ".join(f"{v:,} {k}" for k, v in deleted.items()))

        with StageProgress(self, options["verbosity"]) as progress:
            t = time.monotonic()
            user_ids, users_created = seeding.ensure_users(user_prefix, users, options["password"], progress)
            self.done("users", users_created, len(user_ids), t)

            t = time.monotonic()
            max_personnel = max(per_room * 2, 10)
            room_ids, rooms_created = seeding.ensure_rooms(room_prefix, rooms, max_personnel, user_ids)
            self.done("rooms", rooms_created, len(room_ids), t)

            t = time.monotonic()
            memberships = seeding.ensure_memberships(room_ids, user_ids, per_room, progress)
            self.done("memberships", None, memberships, t)

            t = time.monotonic()
            targets = seeding.message_targets(messages, len(room_ids))
            plans = [
                seeding.MessagePlan(room_id, target, seeding.members_of_room(j, user_ids, per_room))
                for j, (room_id, target) in enumerate(zip(room_ids, targets, strict=True))
            ]
            added = seeding.ensure_messages(plans, progress)
            self.done("messages", added, messages, t)

            if connection.vendor == "postgresql" and (added or memberships):
                # A bulk load leaves the planner's statistics describing the empty tables: without this the
                # first minutes of a benchmark measure bad plans (search was 30x slower), not the server.
                t = time.monotonic()
                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE messaging_message, rooms_membership, rooms_room, accounts_user")
                self.done("analyze", None, 4, t)

        report = seeding.consistency_report(room_ids)
        elapsed = time.monotonic() - started
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"seeded in {elapsed:.1f} s"))
        self.stdout.write(
            f"  users {len(user_ids):,} (+{users_created:,}) · rooms {len(room_ids):,} (+{rooms_created:,}) · "
            f"{min(per_room, len(user_ids))} members per room · messages +{added:,} (target {messages:,})"
        )
        problems = {k: v for k, v in report.items() if v}
        if problems:
            raise CommandError(f"inconsistent seeded rooms: {problems}")
        self.stdout.write(
            "  consistency: personnel = active memberships, seq gapless, last_seq = max(seq) in every room"
        )
        self.stdout.write(
            f"  log in as {seeding.username_for(user_prefix, 1)} / {options['password']} "
            f"(every seeded user has this password)"
        )

    def done(self, stage: str, created: int | None, total: int, since: float) -> None:
        seconds = time.monotonic() - since
        what = f"{total:,}" if created is None else f"+{created:,} of {total:,}"
        rate = f" ({(created if created is not None else total) / seconds:,.0f}/s)" if seconds > 0.05 else ""
        self.stdout.write(f"{stage}: {what} in {seconds:.1f} s{rate}")
