"""Message search under a big history: seed (idempotently), then time one-word searches by a member of
about 20 rooms through the REST endpoint in this process, and report the index's size and build cost.

    manage.py bench_search --messages 1000000 --rooms 1000 --users 1000 --members-per-room 20
"""

from __future__ import annotations

import statistics
import time
from typing import Any
from urllib.parse import urlencode

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import Count
from django.test import Client
from django.test.utils import override_settings
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from rooms.models import Membership

# One-word queries: common and rare words of the seeded bodies (bench.seeding.BODIES), English and Korean.
QUERIES = ("morning", "numbers", "review", "link", "lunch", "idea", "late", "fix", "주소", "점심", "확인", "아침")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Command(BaseCommand):
    help = "Seed a history and time message searches by a member of ~20 rooms (p50/p95/p99 per query)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--messages", type=int, default=1_000_000)
        parser.add_argument("--rooms", type=int, default=1000)
        parser.add_argument("--users", type=int, default=1000)
        parser.add_argument("--members-per-room", type=int, default=20)
        parser.add_argument("--rounds", type=int, default=10, help="times each query is asked")
        parser.add_argument("--skip-seed", action="store_true")
        parser.add_argument("--reindex", action="store_true", help="also time a rebuild of the search index")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["rounds"] < 1:
            raise CommandError("--rounds must be at least 1")
        if not options["skip_seed"]:
            started = time.monotonic()
            call_command(
                "seed_load",
                users=options["users"],
                rooms=options["rooms"],
                messages=options["messages"],
                members_per_room=options["members_per_room"],
                verbosity=0,
            )
            self.stdout.write(f"  seed_seconds: {time.monotonic() - started:.1f}")
        self.report_index(options["reindex"])
        user = self.member_of_about_20_rooms()
        rooms = Membership.objects.active().filter(user=user).count()
        client = Client(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
        self.stdout.write(f"  searcher: {user.username} (member of {rooms} rooms)")
        timings: dict[str, list[float]] = {}
        hits: dict[str, int] = {}
        with override_settings(RATE_LIMITS_ENABLED=False):
            for _round in range(options["rounds"]):
                for query in QUERIES:
                    t = time.perf_counter()
                    answer = client.get("/api/search/messages?" + urlencode({"q": query}))
                    timings.setdefault(query, []).append((time.perf_counter() - t) * 1000)
                    if answer.status_code != 200:
                        raise CommandError(f"search for {query!r} answered {answer.status_code}: {answer.content[:200]!r}")
                    hits[query] = answer.json()["count"]
        everything = [ms for values in timings.values() for ms in values]
        self.stdout.write(f"  database: {connection.vendor}")
        self.stdout.write(f"  searches: {len(everything)}")
        self.stdout.write(
            f"  all_ms: p50 {statistics.median(everything):.1f} p95 {percentile(everything, 0.95):.1f} "
            f"p99 {percentile(everything, 0.99):.1f}"
        )
        for query, values in timings.items():
            self.stdout.write(
                f"  q={query}: hits {hits[query]:,} p50 {statistics.median(values):.1f} ms "
                f"p95 {percentile(values, 0.95):.1f} ms"
            )

    def member_of_about_20_rooms(self) -> User:
        candidates = (
            Membership.objects.active()
            .filter(user__username__startswith="load-")
            .values("user_id")
            .annotate(n=Count("id"))
            .order_by("-n")[:200]
        )
        best = min(candidates, key=lambda row: abs(row["n"] - 20), default=None)
        if best is None:
            raise CommandError("no seeded member found: run without --skip-seed")
        return User.objects.get(pk=best["user_id"])

    def report_index(self, reindex: bool) -> None:
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_relation_size('message_search'), pg_total_relation_size('messaging_message'), "
                "(SELECT count(*) FROM messaging_message)"
            )
            index_bytes, table_bytes, rows = cursor.fetchone()
            self.stdout.write(f"  messages: {rows:,}")
            self.stdout.write(f"  search_index_mib: {index_bytes / 2**20:.1f}")
            self.stdout.write(f"  table_with_indexes_mib: {table_bytes / 2**20:.1f}")
            if reindex:
                started = time.monotonic()
                cursor.execute("REINDEX INDEX message_search")
                self.stdout.write(f"  search_index_rebuild_seconds: {time.monotonic() - started:.1f}")
