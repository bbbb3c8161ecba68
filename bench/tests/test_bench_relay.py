"""bench_relay against the real broker: both phases report their figures, and the command leaves nothing behind."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from accounts.models import User
from core import testing
from events.models import OutboxEvent
from rooms.models import Room


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_bench_relay_reports_throughput_and_lag_draws_progress_on_a_terminal_and_cleans_up(
    monkeypatch: Any, settings: Any, make_terminal: Any
) -> None:
    # The command extends KAFKA_TOPIC_PREFIX by assigning django.conf.settings directly: overridden here first,
    # so that assignment lands in this test's override and ends with it (a later test saw the bench's prefix).
    # Its relay_events child process must read this test's database.
    settings.KAFKA_TOPIC_PREFIX = settings.KAFKA_TOPIC_PREFIX
    monkeypatch.setenv("DATABASE_URL", testing.test_database_url())
    out, err = StringIO(), make_terminal()
    call_command(
        "bench_relay", "--events=300", "--rate=20", "--duration=1", "--poll-interval=0.05", stdout=out, stderr=err
    )
    report = out.getvalue()
    assert "throughput: relayed 300 events in" in report
    assert "lag: 20 events sent in" in report and "commit to consumer p50" in report
    assert "writing:" in err.getvalue() and "sending:" in err.getvalue()
    assert not User.objects.filter(username__startswith="bench-relay-").exists()
    assert not Room.objects.filter(title__startswith="bench relay ").exists()
    assert list(OutboxEvent.objects.values_list("event_type", "room_id")) == []  # its room's own events too


@pytest.mark.django_db
def test_bench_relay_refuses_a_lag_run_of_no_messages_before_touching_anything(settings: Any) -> None:
    settings.KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:9"  # never reached
    with pytest.raises(CommandError, match="at least one message"):
        call_command("bench_relay", "--skip-throughput", "--rate=0.5", "--duration=1", stdout=StringIO())
    assert not User.objects.exists()
