"""The lifecycle benchmarks keep working: chat_bench's `changes` and `replay` scenarios at a tiny size against a
real server process, with the counts that make their figures mean something."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.management import call_command

from messaging.models import Message, MessageEdit, Reaction
from rooms.models import Room

pytestmark = pytest.mark.django_db(transaction=True)


def run_bench(server: Any, *args: str) -> dict[str, Any]:
    json_path = server.log_path.with_suffix(".lifecycle.jsonl")
    json_path.unlink(missing_ok=True)
    call_command("chat_bench", f"--url={server.http_url}", f"--server-pid={server.pid}", f"--json={json_path}", *args)
    result = json.loads(json_path.read_text().splitlines()[-1])
    json_path.unlink()
    return result


def test_chat_bench_changes_measures_send_edit_react_and_delete_each_fully_delivered(server_factory, capsys):
    server = server_factory(env={"RATE_LIMITS": "off"})
    result = run_bench(server, "--scenario=changes", "--members=5", "--senders=2", "--operations=3", "--rate=20")
    assert [p["operation"] for p in result["phases"]] == ["send", "edit", "react", "delete", "resend", "plain_delete"]
    for phase in result["phases"]:
        assert (phase["operations"], phase["unanswered"], phase["errors"]) == (6, 0, {}), phase
        assert phase["deliveries"] == 6 * 5 and phase["behind_after_drain"] == 0
        assert phase["server_cpu_us_per_operation"] is not None and phase["loadavg_at_start"] >= 0
    assert set(result["cpu_ratio_to_send"]) == {"send", "edit", "react", "delete", "resend", "plain_delete"}
    assert result["cpu_ratio_to_send"]["send"] == 1.0
    assert "server CPU vs send" in capsys.readouterr().out
    assert not Room.objects.filter(title__startswith="bench ").exists(), "the bench room is dropped"
    assert not Message.objects.exists() and not Reaction.objects.exists()


def test_chat_bench_replay_resumes_after_as_many_changes_as_messages_and_gets_each_once_in_order(server_factory):
    server = server_factory(env={"RATE_LIMITS": "off"})
    result = run_bench(server, "--scenario=replay", "--changes=30", "--rounds=2", "--replay-clients=2")
    for kind in ("messages", "changes"):
        assert result[kind]["frames_per_client"] == 30, result[kind]
        assert result[kind]["wrong_streams"] == 0
        assert len(result[kind]["frames_per_second_per_round"]) == 2
        assert all(cpu is not None for cpu in result[kind]["server_cpu_us_per_frame_per_round"])
    assert result["changes_speed_ratio"] > 0
    assert not MessageEdit.objects.exists() and not Room.objects.filter(title__startswith="bench ").exists()
