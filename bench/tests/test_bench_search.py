"""bench_search keeps working at a tiny size: it seeds, finds a member of several rooms and prints figures."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_bench_search_seeds_searches_and_prints_latencies_and_hit_counts():
    out = StringIO()
    call_command("bench_search", messages=600, rooms=30, users=40, members_per_room=20, rounds=1, stdout=out)
    report = out.getvalue()
    assert "searches: 12" in report and "all_ms: p50" in report
    hits = {line.split()[0].rstrip(":"): int(line.split()[2].replace(",", "")) for line in report.splitlines() if "q=" in line}
    assert hits["q=morning"] > 0 and hits["q=주소"] > 0  # English and Korean bodies are both found
