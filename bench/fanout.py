"""The fan-out scenario's client side: N member sockets in one room, S of them sending, every socket counting.

This module imports no Django, so that client processes start fast and the same code drives ChatTalk, the
tutorial baseline (bench/) and the fake servers of the tests. A worker:
1. opens its sockets and sends each a ping; the pong proves the server finished connect() (hub joined), so
   no message can be published before a socket listens;
2. waits for the common start signal, then its senders send for `duration` seconds: with `rate` > 0 each
   sender sends open-loop at that rate, else closed-loop with `window` messages in flight;
3. drains until every local socket holds the newest acked seq and nothing arrived for `drain_quiet` seconds
   (at most `drain_max`), so a slow server shows as latency or loss, never as a shorter run;
4. waits for the common signal to close, so that the server's memory and CPU can be read after the traffic
   and before the sockets go.

Sockets offer permessage-deflate as browsers do unless `deflate` is off (client.py).

The send time travels inside the client_id ("<monotonic ns>.<worker>.<sender>.<n>"): CLOCK_MONOTONIC is one
clock for every process of the machine, so a receiver in another process measures send-to-delivery without
any shared state. Loss and duplicates are judged afterwards (`judge`), against the union of all acks.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .client import WebSocketClient, connect

PING_INTERVAL_SECONDS = 30.0  # keeps receive-only sockets under the server's idle limit on long runs


async def keep_alive(members: Any) -> None:
    """Ping every open socket of `members` (anything with a `socket`) every PING_INTERVAL_SECONDS, until
    cancelled: receive-only members would otherwise be closed as idle on a long run."""
    while True:
        await asyncio.sleep(PING_INTERVAL_SECONDS)
        for member in members:
            if member.socket is not None and member.socket.is_open:
                member.socket.send_json({"type": "ping"})


@dataclass
class FanoutSpec:
    """What one client worker does. Picklable: it crosses into client processes."""

    ws_url: str  # ws://127.0.0.1:P/ws/rooms/ID/ (the token is appended)
    tokens: list[str]  # one socket each; with `cookies`, each is the Cookie header of a page's session
    sender_count: int  # the first `sender_count` sockets send
    duration: float
    rate: float = 0.0  # messages per second per sender; 0 = closed loop
    window: int = 1
    worker: int = 0
    connect_concurrency: int = 200
    drain_quiet: float = 2.0
    drain_max: float = 30.0
    body_bytes: int = 100
    keep_timeline: bool = False  # also keep (receive time, latency) pairs, for the login storm
    deflate: bool = True  # offer permessage-deflate, as browsers do
    messages: int = 0  # messages per sender, then it stops; 0: it sends until `duration` ends
    cookies: bool = False  # authenticate as the pages do: the session Cookie and the page's Origin, no token


@dataclass
class SocketRecord:
    seqs: array = field(default_factory=lambda: array("q"))
    client_ids: dict[str, int] = field(default_factory=dict)
    duplicate_client_ids: int = 0
    close_code: int | None = None


@dataclass
class FanoutReport:
    worker: int
    connected: int = 0
    connect_failures: int = 0
    deflate_sockets: int = 0  # sockets on which the server accepted permessage-deflate
    sent: int = 0
    acks: list[tuple[str, int]] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    ack_ms: array = field(default_factory=lambda: array("d"))
    delivery_ms: array = field(default_factory=lambda: array("d"))
    timeline: array = field(default_factory=lambda: array("d"))  # receive time (monotonic s), pairs with delivery_ms
    sockets: list[SocketRecord] = field(default_factory=list)
    started_at: float = 0.0
    sending_stopped_at: float = 0.0
    last_delivery_at: float = 0.0
    client_cpu_seconds: float = 0.0
    drain_timed_out: bool = False  # still missing deliveries drain_max seconds after sending stopped


class _Member:
    """One socket's bookkeeping; `on_text` runs for every frame the server sends it."""

    __slots__ = ("record", "report", "socket", "pong", "acks_waiting", "keep_timeline", "worker_state", "max_seq")

    def __init__(self, report: FanoutReport, keep_timeline: bool, worker_state: dict[str, float]):
        self.record = SocketRecord()
        self.report = report
        self.socket: WebSocketClient | None = None
        self.pong: asyncio.Future[None] | None = None
        self.acks_waiting: dict[str, tuple[int, asyncio.Future[None] | None]] = {}
        self.keep_timeline = keep_timeline
        self.worker_state = worker_state
        self.max_seq = 0

    def on_text(self, data: bytes) -> None:
        frame = json.loads(data)
        kind = frame.get("type")
        if kind == "message":
            now_ns = time.monotonic_ns()
            message = frame["message"]
            record = self.record
            seq = int(message["seq"])
            record.seqs.append(seq)
            if seq > self.max_seq:
                self.max_seq = seq
            client_id = str(message.get("client_id") or "")
            if client_id in record.client_ids:
                if record.client_ids[client_id] != message["seq"]:
                    record.duplicate_client_ids += 1
            else:
                record.client_ids[client_id] = message["seq"]
            sent_ns = _sent_ns(client_id)
            if sent_ns:
                self.report.delivery_ms.append((now_ns - sent_ns) / 1e6)
                if self.keep_timeline:
                    self.report.timeline.append(now_ns / 1e9)
            self.worker_state["last"] = now_ns / 1e9
        elif kind == "ack":
            waiting = self.acks_waiting.pop(str(frame.get("client_id")), None)
            if waiting is not None:
                sent_ns, future = waiting
                self.report.ack_ms.append((time.monotonic_ns() - sent_ns) / 1e6)
                self.report.acks.append((str(frame["client_id"]), int(frame["seq"])))
                if future is not None and not future.done():
                    future.set_result(None)
        elif kind == "pong":
            if self.pong is not None and not self.pong.done():
                self.pong.set_result(None)
        elif kind == "error":
            code = str(frame.get("code"))
            self.report.errors[code] = self.report.errors.get(code, 0) + 1
            waiting = self.acks_waiting.pop(str(frame.get("client_id")), None)
            if waiting is not None and waiting[1] is not None and not waiting[1].done():
                waiting[1].set_result(None)


def _sent_ns(client_id: str) -> int:
    head = client_id.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def make_body(size: int, n: int) -> str:
    text = f"load message {n} "
    return (text * (size // len(text) + 1))[:size]


async def _open(member: _Member, url: str, deflate: bool, headers: dict[str, str] | None = None) -> None:
    member.socket = await connect(url, member.on_text, deflate=deflate, headers=headers)
    member.pong = asyncio.get_running_loop().create_future()
    member.socket.send_json({"type": "ping"})
    await asyncio.wait_for(member.pong, 60.0)


async def run_fanout_worker(
    spec: FanoutSpec,
    start: Callable[[], Awaitable[None]],
    drained: Callable[[], Awaitable[None]] | None = None,
) -> FanoutReport:
    """Connect, wait for `start()`, send and receive, drain, wait for `drained()`, close: see the module
    docstring."""
    report = FanoutReport(worker=spec.worker)
    state: dict[str, float] = {"last": 0.0}
    members = [_Member(report, spec.keep_timeline, state) for _ in spec.tokens]
    gate = asyncio.Semaphore(spec.connect_concurrency)
    separator = "&" if "?" in spec.ws_url else "?"

    origin = "http://" + spec.ws_url.split("://", 1)[1].split("/", 1)[0]

    async def open_one(member: _Member, token: str) -> bool:
        async with gate:
            try:
                if spec.cookies:
                    await _open(member, spec.ws_url, spec.deflate, {"Cookie": token, "Origin": origin})
                else:
                    await _open(member, f"{spec.ws_url}{separator}access_token={token}", spec.deflate)
                return True
            except (OSError, TimeoutError):
                return False

    results = await asyncio.gather(*(open_one(m, t) for m, t in zip(members, spec.tokens, strict=True)))
    report.connected = sum(results)
    report.connect_failures = len(results) - report.connected
    report.deflate_sockets = sum(1 for m in members if m.socket is not None and m.socket.deflate is not None)

    await start()
    cpu_start = time.process_time()
    report.started_at = time.monotonic()
    deadline = report.started_at + spec.duration

    async def send_loop(index: int, member: _Member) -> None:
        sock = member.socket
        n = 0
        in_flight: set[asyncio.Future[None]] = set()
        interval = 1.0 / spec.rate if spec.rate > 0 else 0.0
        # Spread the senders' phases over the whole interval (and workers apart from each other): phase-
        # locked senders would offer the server synchronized bursts that no real room produces.
        phase = (index / max(1, spec.sender_count) + spec.worker * 0.37) % 1.0
        next_at = report.started_at + phase * interval
        while sock is not None and sock.is_open:
            now = time.monotonic()
            if now >= deadline or (spec.messages and n >= spec.messages):
                break
            if interval:
                if next_at > now:
                    await asyncio.sleep(next_at - now)
                next_at += interval
                if time.monotonic() >= deadline:
                    break
            sent_ns = time.monotonic_ns()
            client_id = f"{sent_ns}.{spec.worker}.{index}.{n}"
            future = asyncio.get_running_loop().create_future() if not interval else None
            member.acks_waiting[client_id] = (sent_ns, future)
            sock.send_json({"type": "send", "client_id": client_id, "body": make_body(spec.body_bytes, n)})
            report.sent += 1
            n += 1
            if future is not None:
                in_flight.add(future)
                future.add_done_callback(in_flight.discard)
                while len(in_flight) >= spec.window and time.monotonic() < deadline:
                    await asyncio.wait(in_flight, timeout=max(0.0, deadline - time.monotonic()))

    pinger = asyncio.ensure_future(keep_alive(members))
    senders = [send_loop(i, m) for i, m in enumerate(members[: spec.sender_count])]
    await asyncio.gather(*senders)
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    report.sending_stopped_at = time.monotonic()
    # Drain, or drain_max: until every ack is in, every local socket has received the newest acked seq (a
    # socket gets a room's seqs in order, so that means everything acked here), and nothing arrived for
    # drain_quiet seconds (for what other workers' senders sent).
    drain_deadline = report.sending_stopped_at + spec.drain_max
    while time.monotonic() < drain_deadline:
        quiet_for = time.monotonic() - max(state["last"], report.sending_stopped_at)
        open_members = [m for m in members if m.socket is not None and m.socket.is_open]
        waiting = any(m.acks_waiting for m in open_members[: spec.sender_count])
        newest_acked = max((seq for _cid, seq in report.acks), default=0)
        behind = any(m.max_seq < newest_acked for m in open_members)
        if quiet_for >= spec.drain_quiet and not waiting and not behind:
            break
        await asyncio.sleep(0.1)
    else:
        report.drain_timed_out = True
    report.last_delivery_at = state["last"]
    report.client_cpu_seconds = time.process_time() - cpu_start
    if drained is not None:
        await drained()
    pinger.cancel()
    for member in members:
        if member.socket is not None:
            member.record.close_code = member.socket.close_code
    await asyncio.gather(*(m.socket.close() for m in members if m.socket is not None), return_exceptions=True)
    report.sockets = [m.record for m in members]
    return report


def _process_main(spec: FanoutSpec, ready: Any, go: Any, drained: Any, close: Any, results: Any) -> None:
    """Entry point of a client process (multiprocessing 'spawn')."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a runtime dependency
        pass

    async def start() -> None:
        ready.put(spec.worker)
        await asyncio.get_running_loop().run_in_executor(None, go.wait)

    async def done() -> None:
        drained.put(spec.worker)
        await asyncio.get_running_loop().run_in_executor(None, close.wait)

    report = asyncio.run(run_fanout_worker(spec, start, done))
    for record in report.sockets:
        record.client_ids = {}  # not needed by the judge; keeps the pickle small
    results.put(report)


def judge(reports: list[FanoutReport]) -> dict[str, Any]:
    """Loss and duplicates per receiving socket, against the union of every ack of every worker.

    Every socket was open before the first send and is expected to receive every acked message once:
    lost = acked seqs a socket never received (by seq), duplicated = seqs a socket received more than once
    plus client_ids that arrived under two different seqs (the server stored a message twice).
    """
    acked_seqs = {seq for report in reports for _cid, seq in report.acks}
    lost_deliveries = 0
    lost_messages: set[int] = set()
    duplicates = 0
    out_of_order = 0
    unexpected = 0
    closed: dict[str, int] = {}
    sockets = 0
    for report in reports:
        for record in report.sockets:
            sockets += 1
            received = set(record.seqs)
            duplicates += len(record.seqs) - len(received) + record.duplicate_client_ids
            missing = acked_seqs - received
            lost_deliveries += len(missing)
            lost_messages |= missing
            unexpected += len(received - acked_seqs)
            previous = -1
            for seq in record.seqs:
                if seq <= previous:
                    out_of_order += 1
                previous = max(previous, seq)
            if record.close_code is not None:
                closed[str(record.close_code)] = closed.get(str(record.close_code), 0) + 1
    return {
        "sockets": sockets,
        "acked_messages": len(acked_seqs),
        "expected_deliveries": len(acked_seqs) * sockets,
        "lost_deliveries": lost_deliveries,
        "lost_messages": len(lost_messages),
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "unacked_deliveries": unexpected,
        "closed_by_server": closed,
    }


def percentile(values: Any, fraction: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return float(ordered[index])


def summarize(reports: list[FanoutReport]) -> dict[str, Any]:
    """Throughput and latency across workers, plus the judge's loss and duplicate counts."""
    deliveries = sum(len(r.delivery_ms) for r in reports)
    started = min((r.started_at for r in reports), default=0.0)
    last = max((r.last_delivery_at for r in reports), default=0.0)
    stopped = max((r.sending_stopped_at for r in reports), default=0.0)
    span = max(last, stopped) - started if last else stopped - started
    delivery_ms: list[float] = [v for r in reports for v in r.delivery_ms]
    ack_ms: list[float] = [v for r in reports for v in r.ack_ms]
    errors: dict[str, int] = {}
    for r in reports:
        for code, count in r.errors.items():
            errors[code] = errors.get(code, 0) + count
    summary = {
        "connected": sum(r.connected for r in reports),
        "connect_failures": sum(r.connect_failures for r in reports),
        "sent": sum(r.sent for r in reports),
        "acked": sum(len(r.acks) for r in reports),
        "errors": errors,
        "deliveries": deliveries,
        "seconds": round(span, 3),
        "deliveries_per_second": round(deliveries / span, 1) if span > 0 else 0.0,
        "delivery_p50_ms": _round(percentile(delivery_ms, 0.50)),
        "delivery_p95_ms": _round(percentile(delivery_ms, 0.95)),
        "delivery_p99_ms": _round(percentile(delivery_ms, 0.99)),
        "ack_p50_ms": _round(percentile(ack_ms, 0.50)),
        "ack_p99_ms": _round(percentile(ack_ms, 0.99)),
        "deflate_sockets": sum(r.deflate_sockets for r in reports),
        "client_cpu_seconds": round(sum(r.client_cpu_seconds for r in reports), 3),
        "drain_timed_out": any(r.drain_timed_out for r in reports),
    }
    summary.update(judge(reports))
    return summary


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _barrier(parties: int, on_all: Callable[[], None] | None) -> Callable[[], Awaitable[None]]:
    """An awaitable that returns once `parties` callers arrived; the last one runs `on_all` first."""
    arrived = 0
    everyone = asyncio.Event()

    async def arrive() -> None:
        nonlocal arrived
        arrived += 1
        if arrived == parties:
            if on_all is not None:
                on_all()
            everyone.set()
        await everyone.wait()

    return arrive


async def run_in_process(
    specs: list[FanoutSpec],
    on_all_ready: Callable[[], None] | None = None,
    on_all_drained: Callable[[], None] | None = None,
) -> list[FanoutReport]:
    """All workers in this process and loop (tests, small runs): they start together once all connected, and
    close together once all drained (after `on_all_drained`)."""
    start, drained = _barrier(len(specs), on_all_ready), _barrier(len(specs), on_all_drained)
    return list(await asyncio.gather(*(run_fanout_worker(spec, start, drained) for spec in specs)))


def run_in_processes(
    specs: list[FanoutSpec],
    on_all_ready: Callable[[], None] | None = None,
    connect_timeout: float = 300.0,
    on_all_drained: Callable[[], None] | None = None,
) -> list[FanoutReport]:
    """One client process per spec; all start sending together once every socket of every process is open,
    and close together once every process drained (after `on_all_drained`)."""
    context = multiprocessing.get_context("spawn")
    ready, drained, results = context.Queue(), context.Queue(), context.Queue()
    go, close = context.Event(), context.Event()
    processes = [
        context.Process(target=_process_main, args=(spec, ready, go, drained, close, results), daemon=True)
        for spec in specs
    ]
    for process in processes:
        process.start()
    try:
        for _ in specs:
            ready.get(timeout=connect_timeout)
        if on_all_ready is not None:
            on_all_ready()
        go.set()
        longest = max(spec.duration + spec.drain_max for spec in specs) + 120.0
        for _ in specs:
            drained.get(timeout=longest)
        if on_all_drained is not None:
            on_all_drained()
        close.set()
        reports = [results.get(timeout=120.0) for _ in specs]
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    return sorted(reports, key=lambda r: r.worker)
