"""chat_bench's counting: a fake chat server that misbehaves on purpose must be caught, a faithful one must not.

The fake server speaks the chat socket's frames (ping/pong, send -> ack + message to every socket) with the
`websockets` library, independent of the benchmark's own client (and, like a browser's server, accepting
permessage-deflate); it can skip one delivery to one socket (loss) or deliver one message twice (duplicate).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from websockets.asyncio.server import serve

from bench.client import require_loopback
from bench.fanout import FanoutSpec, run_in_process, summarize
from bench.servers import process_cpu_seconds, process_rss_bytes


class FakeChatServer:
    """Broadcasts every send to every socket; `drop` = (socket index, seq) to skip, `duplicate` = seq to send
    twice to socket 0, `restore` = (client_id reuse) to store one message under two seqs."""

    def __init__(
        self, drop: tuple[int, int] | None = None, duplicate: int | None = None, double_store: int | None = None
    ):
        self.drop, self.duplicate, self.double_store = drop, duplicate, double_store
        self.sockets: list[Any] = []
        self.seq = 0

    async def handler(self, websocket: Any) -> None:
        self.sockets.append(websocket)
        async for raw in websocket:
            frame = json.loads(raw)
            if frame["type"] == "ping":
                await websocket.send(json.dumps({"type": "pong"}))
            elif frame["type"] == "send":
                await self.store_and_broadcast(websocket, frame["client_id"], frame["body"])

    async def store_and_broadcast(self, sender: Any, client_id: str, body: str) -> None:
        self.seq += 1
        seq = self.seq
        await sender.send(json.dumps({"type": "ack", "client_id": client_id, "seq": seq, "id": seq}))
        copies = [seq]
        if self.double_store == seq:
            self.seq += 1
            copies.append(self.seq)  # the same client_id stored again under a new seq
        for stored in copies:
            text = json.dumps({"type": "message", "message": {"seq": stored, "client_id": client_id, "body": body}})
            for index, socket in enumerate(list(self.sockets)):
                if self.drop == (index, stored):
                    continue
                await socket.send(text)
                if self.duplicate == stored and index == 0:
                    await socket.send(text)


def run_against(
    server: FakeChatServer,
    sockets: int = 4,
    senders: int = 2,
    duration: float = 0.4,
    deflate: bool = True,
    messages: int = 0,
) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with serve(server.handler, "127.0.0.1", 0) as running:
            port = running.sockets[0].getsockname()[1]
            spec = FanoutSpec(
                ws_url=f"ws://127.0.0.1:{port}/ws/rooms/1/",
                tokens=[f"t{i}" for i in range(sockets)],
                sender_count=senders,
                duration=duration,
                drain_quiet=0.2,
                drain_max=3.0,
                deflate=deflate,
                messages=messages,
            )
            return summarize(await run_in_process([spec]))

    return asyncio.run(main())


def test_faithful_server_reports_no_loss_and_no_duplicates() -> None:
    summary = run_against(FakeChatServer())
    assert summary["acked"] > 5
    assert summary["deliveries"] == summary["acked"] * 4
    assert summary["lost_deliveries"] == 0
    assert summary["duplicates"] == 0
    assert summary["delivery_p99_ms"] is not None and summary["ack_p50_ms"] is not None
    assert summary["deflate_sockets"] == 4  # the websockets library accepts the browser's offer


def test_sockets_offer_no_compression_when_told_and_then_count_the_same() -> None:
    summary = run_against(FakeChatServer(), deflate=False)
    assert summary["deflate_sockets"] == 0
    assert summary["acked"] > 5 and summary["deliveries"] == summary["acked"] * 4
    assert summary["lost_deliveries"] == 0 and summary["duplicates"] == 0


def test_each_sender_stops_after_its_message_cap() -> None:
    summary = run_against(FakeChatServer(), senders=2, duration=0.6, messages=3)
    assert summary["sent"] == summary["acked"] == 6
    assert summary["deliveries"] == 6 * 4 and summary["lost_deliveries"] == 0


def test_a_delivery_skipped_for_one_socket_is_reported_as_one_loss() -> None:
    summary = run_against(FakeChatServer(drop=(2, 3)))
    assert summary["acked"] >= 3
    assert summary["lost_deliveries"] == 1
    assert summary["lost_messages"] == 1
    assert summary["duplicates"] == 0


def test_a_message_delivered_twice_is_reported_as_a_duplicate() -> None:
    summary = run_against(FakeChatServer(duplicate=2))
    assert summary["duplicates"] == 1
    assert summary["lost_deliveries"] == 0


def test_a_client_id_stored_under_two_seqs_is_reported_as_duplicate() -> None:
    summary = run_against(FakeChatServer(double_store=2))
    # Every socket sees client_id of seq 2 again under seq 3: one duplicate per socket.
    assert summary["duplicates"] == 4
    assert summary["unacked_deliveries"] == 4  # seq 3 was never acked to anyone


def test_benchmarks_refuse_targets_off_this_machine() -> None:
    assert require_loopback("ws://127.0.0.1:8100/ws/rooms/1/")[1] == 8100
    assert require_loopback("http://10.231.0.1:18080/readyz")[1] == 18080  # scripts/netcluster's balancer
    for url in ("ws://10.0.0.5:8000/", "http://192.168.1.2/", "ws://example.com/", "ws://10.231.1.5/"):
        with pytest.raises(ValueError):
            require_loopback(url)


def test_server_cpu_and_memory_are_read_from_proc() -> None:
    before = process_cpu_seconds(os.getpid())
    # /proc counts in clock ticks (10 ms): burn CPU until a tick lands, for at most 2 s of wall time.
    deadline = time.monotonic() + 2.0
    while process_cpu_seconds(os.getpid()) <= before and time.monotonic() < deadline:
        sum(i * i for i in range(100_000))
    assert process_cpu_seconds(os.getpid()) > before
    assert process_rss_bytes(os.getpid()) > 1 << 20


@pytest.mark.django_db(transaction=True)
def test_chat_bench_fanout_against_a_real_server_counts_every_delivery(server_factory: Any, capsys: Any) -> None:
    server = server_factory(env={"RATE_LIMITS": "off"})
    json_path = server.log_path.with_suffix(".bench.jsonl")
    json_path.unlink(missing_ok=True)
    call_command(
        "chat_bench",
        "--scenario=fanout",
        f"--url={server.http_url}",
        f"--server-pid={server.pid}",
        "--members=6",
        "--senders=2",
        "--duration=1",
        "--processes=0",
        f"--json={json_path}",
    )
    result = json.loads(json_path.read_text().splitlines()[-1])
    json_path.unlink()
    assert result["connected"] == 6
    assert result["acked"] > 0
    assert result["deliveries"] == result["acked"] * 6
    assert result["lost_deliveries"] == 0 and result["duplicates"] == 0
    assert result["server_cpu_us_per_delivery"] > 0
    # Browser-like sockets by default (deflate offered); the server command declines it by default.
    assert result["client_deflate"] is True and result["deflate_sockets"] == 0
    # Server memory before connecting, once connected, and after the traffic with the sockets still open.
    assert 0 < result["server_rss_before_mib"] <= result["server_rss_connected_mib"]
    assert result["server_rss_after_traffic_mib"] > 0
    assert "kib_per_socket_connected" in result and "kib_per_socket_after_traffic" in result
    output = capsys.readouterr().out
    assert "deliveries_per_second" in output
    assert "permessage-deflate negotiated on 0 of 6 sockets" in output


@pytest.mark.django_db(transaction=True)
def test_chat_bench_no_deflate_sockets_offer_nothing_and_still_count_every_delivery(
    server_factory: Any, capsys: Any
) -> None:
    server = server_factory(env={"RATE_LIMITS": "off"})
    json_path = server.log_path.with_suffix(".bench.jsonl")
    json_path.unlink(missing_ok=True)
    call_command(
        "chat_bench",
        "--scenario=fanout",
        f"--url={server.http_url}",
        "--members=4",
        "--senders=1",
        "--messages=3",
        "--duration=0.5",
        "--processes=0",
        "--no-deflate",
        f"--json={json_path}",
    )
    result = json.loads(json_path.read_text().splitlines()[-1])
    json_path.unlink()
    assert result["client_deflate"] is False and result["deflate_sockets"] == 0
    assert result["acked"] == 3 and result["deliveries"] == 3 * 4 and result["lost_deliveries"] == 0
    assert "permessage-deflate negotiated on 0 of 4 sockets (not offered)" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_chat_bench_compare_runs_each_app_with_server_deflate_on_and_off(monkeypatch: Any, capsys: Any) -> None:
    from core.testing import free_port, test_database_url

    # The servers compare starts take this process's environment: point them at the test database.
    monkeypatch.setenv("DATABASE_URL", test_database_url())
    monkeypatch.setenv("TESTING", "1")
    json_path = Path("var") / f"compare-deflate-{os.getpid()}.jsonl"
    json_path.unlink(missing_ok=True)
    call_command(
        "chat_bench",
        "--scenario=compare",
        "--apps=chattalk",
        f"--ports={free_port()}",
        "--server-deflate=both",
        "--members-list=4",
        "--senders=1",
        "--messages=3",
        "--no-saturate",
        "--offered=40",
        "--duration=0.8",
        "--processes=0",
        f"--json={json_path}",
    )
    results = [json.loads(line) for line in json_path.read_text().splitlines()]
    json_path.unlink()
    assert [(r["server_deflate"], r["deflate_sockets"]) for r in results] == [("on", 4), ("off", 0)]
    for result in results:
        assert result["client_deflate"] is True
        assert result["acked"] == 3 and result["deliveries"] == 12 and result["lost_deliveries"] == 0
        assert result["kib_per_socket_after_traffic"] is not None and result["server_cpu_us_per_delivery"] > 0
    output = capsys.readouterr().out
    assert "permessage-deflate negotiated on 4 of 4 sockets" in output
    assert "permessage-deflate negotiated on 0 of 4 sockets" in output
    assert "server deflate on against off" in output


@pytest.mark.django_db(transaction=True)
def test_resume_storm_checks_every_client_gets_the_whole_history_once_in_order(server_factory: Any) -> None:
    from bench import scenarios

    server = server_factory(env={"RATE_LIMITS": "off"})
    result = scenarios.resume_storm(server.http_url, clients=4, history=30)
    assert result["last_seq"] == 30
    assert result["failures"] == 0
    assert result["clients_with_wrong_stream"] == 0
    assert result["messages_replayed"] == 4 * 30


@pytest.mark.django_db(transaction=True)
def test_connect_storm_opens_every_socket_and_reads_the_servers_memory(server_factory: Any) -> None:
    from bench import scenarios

    server = server_factory(env={"RATE_LIMITS": "off"})
    result = scenarios.connect_storm(server.http_url, sockets=20, concurrency=10, hold=0.2, server_pid=server.pid)
    assert result["opened"] == 20 and result["failures"] == {}
    assert result["sockets_per_second"] > 0
    assert result["server_rss_after_mib"] > 0 and "kib_per_idle_socket" in result
    assert result["deflate_sockets"] == 0  # browser-like sockets offer it; the server command declines by default
    assert result["idle_seconds_measured"] > 0 and result["server_cpu_idle_percent_of_core"] >= 0
    assert result["loadavg_at_start"] >= 0


@pytest.mark.django_db(transaction=True)
def test_connect_storm_in_page_mode_opens_a_room_pages_three_sockets_per_user(server_factory: Any) -> None:
    """--page: chat, presence and /ws/me/ per user, every one answering its ping (a path the server refused
    would close before its pong and count as a failure); the hold reports CPU per window."""
    from bench import scenarios

    server = server_factory(env={"RATE_LIMITS": "off"})
    result = scenarios.connect_storm(
        server.http_url, sockets=9, concurrency=9, hold=0.4, server_pid=server.pid, page=True
    )
    assert result["page"] is True and result["opened"] == 9 and result["failures"] == {}
    assert result["closed_while_idle"] == 0
    assert len(result["server_cpu_idle_percent_by_window"]) >= 1


@pytest.mark.django_db(transaction=True)
def test_join_stampede_reports_an_exact_seat_count(server_factory: Any) -> None:
    from bench import scenarios

    server = server_factory(env={"RATE_LIMITS": "off"})
    result = scenarios.join_stampede(server.http_url, users=12, seats=5, concurrency=12)
    assert result["via"].startswith("REST")
    assert result["joined"] == 5 and result["personnel"] == 5 and result["active_memberships"] == 5
    assert result["outcomes"].get("409 room_full") == 7
    assert result["exact"] is True


@pytest.mark.django_db(transaction=True)
def test_login_ramp_counts_every_step_and_cleans_up_its_rooms(server_factory: Any) -> None:
    from bench import scenarios
    from rooms.models import Room

    server = server_factory(env={"RATE_LIMITS": "off"})
    result = scenarios.login_ramp(server.http_url, users=6, ramp_seconds=0.5, lists_per_user=2)
    assert result["login_failures"] == 0 and result["create_room_failures"] == 0
    assert result["list_rooms_failures"] == 0 and result["list_rooms_p95_ms"] is not None
    assert not Room.objects.filter(title__startswith="ramp ").exists()

    limited = server_factory(env={"THROTTLE_LOGIN_IP": "2/minute"}, name="limited")
    refused = scenarios.login_ramp(limited.http_url, users=4, ramp_seconds=0.1, lists_per_user=1)
    assert refused["login_failures"] == 2 and refused["login_outcomes"] == {"429": 2}


def _server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    import struct

    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        return head + bytes([n]) + payload
    if n < 1 << 16:
        return head + bytes([126]) + struct.pack("!H", n) + payload
    return head + bytes([127]) + struct.pack("!Q", n) + payload


def test_the_bench_client_parses_frames_split_anywhere_and_fragmented() -> None:
    from bench.client import WebSocketClient, mask_payload

    async def main() -> list[bytes]:
        received: list[bytes] = []
        client = WebSocketClient("127.0.0.1", 1, "/", received.append)
        big = b"x" * 70_000
        stream = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
            + _server_frame(0x1, b'{"a":1}')
            + _server_frame(0x1, b"m" * 300)
            + _server_frame(0x1, big)
            + _server_frame(0x1, b"frag", fin=False)
            + _server_frame(0x0, b"mented")
        )
        for start in range(0, len(stream), 7):  # arrives in 7-byte pieces
            client.data_received(stream[start : start + 7])
        assert client.opened.done()
        assert mask_payload(mask_payload(b"hello", b"abcd"), b"abcd") == b"hello"
        return received

    received = asyncio.run(main())
    assert received == [b'{"a":1}', b"m" * 300, b"x" * 70_000, b"fragmented"]
