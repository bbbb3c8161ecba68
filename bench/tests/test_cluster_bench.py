"""The cluster benchmark's pure parts: the judge, the windows, the recovery timings, how members are dealt
over client workers, and the member's resume bookkeeping (bench/cluster.py, bench/cluster_run.py)."""

from __future__ import annotations

import asyncio
import json
from array import array
from typing import Any

from bench.cluster import (
    MemberRecord,
    ResumingMember,
    WorkerReport,
    judge,
    recovery,
    sent_in_reached_all,
    sent_ns,
    window,
)
from bench.cluster_run import Plan, services_rates, split


def record(room_id: int, seqs: list[int], **kwargs: Any) -> MemberRecord:
    r = MemberRecord(room_id, array("q", seqs), **kwargs)
    if r.first_synced_at is None:
        r.first_synced_at = 0.0
    return r


def test_judge_expects_every_seq_of_the_members_room_from_one() -> None:
    members = [record(1, [1, 2, 3]), record(1, [1, 3]), record(2, [1])]
    verdict = judge(members, {1: 3, 2: 2})
    assert verdict["expected_deliveries"] == 3 + 3 + 2
    assert verdict["received_deliveries"] == 3 + 2 + 1
    assert verdict["lost_deliveries"] == 2  # seq 2 of the second member, seq 2 of room 2


def test_judge_counts_duplicates_and_out_of_order_seqs_without_calling_them_received_twice() -> None:
    verdict = judge([record(1, [1, 2, 2, 4, 3])], {1: 4})
    assert verdict["duplicates"] == 1
    assert verdict["out_of_order"] == 1
    assert verdict["lost_deliveries"] == 0
    assert verdict["received_deliveries"] == 4


def test_judge_reports_members_that_never_synced_and_live_gaps() -> None:
    never = MemberRecord(1)
    verdict = judge([never, record(1, [1, 3], live_gaps=1)], {1: 3})
    assert verdict["members_never_synced"] == 1
    assert verdict["live_gaps"] == 1
    assert verdict["lost_deliveries"] == 3 + 1


def test_window_counts_only_deliveries_inside_it() -> None:
    at = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    ms = [100.0, 1.0, 2.0, 3.0, 4.0, 100.0]
    figures = window(at, ms, 1.0, 3.0)
    assert figures["deliveries"] == 4
    assert figures["deliveries_per_second"] == 2.0
    assert figures["max_ms"] == 4.0
    assert figures["p50_ms"] in (2.0, 3.0)


def test_recovery_times_the_last_resync_of_the_sockets_lost_after_the_failure() -> None:
    members = [
        record(1, [], losses=[(5.0, 5.5, 1006)]),  # before the failure: not counted
        record(1, [], losses=[(10.5, 12.0, 1006)]),
        record(1, [], losses=[(11.0, 17.25, 1013), (18.0, None, 1006)]),
        record(1, []),
    ]
    figures = recovery(members, 10.0, 20.0)
    assert figures["sockets_lost"] == 3
    assert figures["members_lost"] == 2
    assert figures["never_resynced"] == 1
    assert figures["close_codes"] == {"1006": 2, "1013": 1}
    assert figures["failure_to_first_loss_s"] == 0.5
    assert figures["failure_to_last_resynced_s"] == 7.25


def test_sent_in_reached_all_is_the_last_delivery_of_what_was_sent_in_that_second() -> None:
    # (received at, latency ms): sent at 9.9 (before), 10.2 (inside, received 16.0), 10.8 (inside), 11.5 (after)
    at = [10.0, 16.0, 11.0, 30.0]
    ms = [100.0, 5800.0, 200.0, 18500.0]
    assert sent_in_reached_all(at, ms, 10.0) == 6.0
    assert sent_in_reached_all(at, ms, 40.0) is None


def test_sent_ns_reads_the_send_time_a_bench_client_id_starts_with() -> None:
    assert sent_ns("123456.0.4.7") == 123456
    assert sent_ns("9b2f-uuid") == 0


def test_split_deals_each_rooms_members_and_senders_over_the_workers() -> None:
    plan = Plan(big_members=7, big_senders=4, big_rate=2.0, rooms=2, room_members=3, room_rate=0.5, workers=3)
    rooms = [(10, [f"b{i}" for i in range(7)]), (11, ["x0", "x1", "x2"]), (12, ["y0", "y1", "y2"])]
    specs = split(plan, rooms, "ws://10.231.0.1:18080", "ctk-cl")
    parts = {(s.worker, p.room_id): p for s in specs for p in s.rooms}
    assert sorted(t for (w, r), p in parts.items() if r == 10 for t in p.tokens) == sorted(rooms[0][1])
    assert sum(p.senders for (w, r), p in parts.items() if r == 10) == 4
    assert all(p.rate == 2.0 for (w, r), p in parts.items() if r == 10)
    for room_id in (11, 12):  # one sender per small room, and not always on the same worker
        assert sum(p.senders for (w, r), p in parts.items() if r == room_id) == 1
    sender_workers = {w for (w, r), p in parts.items() if r in (11, 12) and p.senders}
    assert len(sender_workers) == 2
    assert all(s.namespace == "ctk-cl" for s in specs)


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.is_open = True

    def send_json(self, frame: dict[str, Any]) -> None:
        self.sent.append(frame)


def frame(**kwargs: Any) -> bytes:
    return json.dumps(kwargs).encode()


def message(seq: int, client_id: str = "") -> bytes:
    return frame(type="message", message={"seq": seq, "client_id": client_id})


def test_member_holds_sends_until_synced_resends_unacked_ones_after_a_resync_and_counts_live_gaps_apart() -> None:
    async def scenario() -> None:
        report = WorkerReport(worker=0)
        member = ResumingMember(0, 5, "ws://10.231.0.1:18080/ws/rooms/5/?access_token=t", report, deflate=False)
        first = FakeSocket()
        member.socket = first  # type: ignore[assignment]
        member.send("1.0.0.0", "a")
        assert first.sent == []  # not synced yet: sent on `synced`
        member.on_text(frame(type="synced", last_seq=0))
        assert [f["client_id"] for f in first.sent] == ["1.0.0.0"]
        member.on_text(frame(type="ack", client_id="1.0.0.0", seq=1))
        member.send("2.0.0.1", "b")
        member.on_text(message(1, "1.0.0.0"))
        member.on_text(message(3, "x"))  # seq 2 skipped on a synced socket: a live gap
        assert member.record.live_gaps == 1
        assert member.last_seq == 3
        # the socket is lost before "2.0.0.1" is acked; the next socket resumes and resends it
        member.synced = False
        second = FakeSocket()
        member.socket = second  # type: ignore[assignment]
        member.record.losses.append((100.0, None, 1006))
        member.on_text(message(2, "2.0.0.1"))  # replayed before synced: not a live gap
        member.on_text(frame(type="synced", last_seq=3))
        assert [f["client_id"] for f in second.sent] == ["2.0.0.1"]
        assert member.record.losses[0][1] is not None
        assert member.record.sockets == 2
        assert report.resends == 1
        assert member.record.live_gaps == 1
        assert [a[1:3] for a in report.acked] == [("1.0.0.0", 1)]
        assert list(member.record.seqs) == [1, 3, 2]
        assert (len(report.delivered_at), len(report.replayed_at)) == (1, 1)  # live latency leaves replays out

    asyncio.run(scenario())


def test_judge_tells_seqs_stored_after_the_drain_target_from_seqs_lost_by_a_socket() -> None:
    verdict = judge([record(1, [1, 2, 4])], {1: 5}, {1: 4})
    assert verdict["lost_deliveries"] == 2  # 3 and 5
    assert verdict["lost_past_drain_target"] == 1  # 5 was stored after the members were drained to 4


def test_services_rates_are_per_second_between_two_snapshots() -> None:
    before = {"at": 10.0, "rss": {7: 100 * 2**20}, "redis_commands": 1000, "pg": [50, 10, 20, 0]}
    after = {"at": 14.0, "rss": {7: 130 * 2**20}, "redis_commands": 3000, "pg": [90, 30, 40, 4]}
    rates = services_rates(before, after)
    assert rates["redis_commands_per_second"] == 500.0
    assert rates["pg_transactions_per_second"] == 10.0
    assert rates["pg_rows_inserted_per_second"] == 5.0
    assert rates["web_rss_mib"] == {"7": 130.0}
    assert "redis_commands_per_second" not in services_rates({"at": 10.0, "rss": {}}, {"at": 14.0, "rss": {}})
