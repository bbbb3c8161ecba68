"""The cluster benchmark's client side: members that behave like real clients, across failures.

The fan-out bench (fanout.py) opens each socket once and judges it against everything acked: right for one
server that never fails, wrong for a cluster where a host is cut off or Redis fails over, since a socket that
is lost there is, by the contract, resumed by its client. A member here does what a careful client does
(as chattalk_project/tests/faults_support.Member does):
- connects with `?after_seq=<last seq seen>` (0 for its first socket: the rooms are fresh, so every member
  must see every seq from 1), and counts as connected only at the server's `synced`;
- when its socket closes (the balancer shut it, the server said 1013/4503, the link died), reconnects with
  the same query and records the loss and the `synced` times;
- a sender resends each unacknowledged send with its client_id after every resync, and after an
  `unavailable` error; the server stores a client_id once.

Loss is judged afterwards against the room's final last_seq (read from the database by the parent): every
seq in 1..last_seq that a member never received is lost; a seq received twice is a duplicate, a seq lower
than one already received is out of order, and a seq past last+1 on a socket already `synced` is a gap in
the live stream (a server bug whatever the client does later: the contract promises gapless sockets).

This module imports no Django: client processes start fast. A worker process may first enter a network
namespace (the test cluster's client namespace), so that the clients' traffic crosses the bridge as a
real client's would.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import multiprocessing
import os
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

from .client import WebSocketClient, connect
from .fanout import keep_alive, make_body, percentile

RECONNECT_DELAY_SECONDS = 0.05
UNAVAILABLE_RETRY_SECONDS = 0.2
CLONE_NEWNET = 0x40000000


@dataclass
class RoomPart:
    """One room's members in one worker: their tokens; the first `senders` of them send at `rate` msg/s each."""

    room_id: int
    tokens: list[str]
    senders: int = 0
    rate: float = 0.0


@dataclass
class ClusterSpec:
    """What one client worker process does. Picklable."""

    worker: int
    ws_base: str  # ws://ADDR:PORT (the balancer, or one server)
    rooms: list[RoomPart]
    namespace: str | None = None  # a network namespace to enter first (ip netns name)
    connect_concurrency: int = 100
    body_bytes: int = 100
    deflate: bool = True


@dataclass
class MemberRecord:
    """What one member saw, for the judge (picklable, compact)."""

    room_id: int
    seqs: array = field(default_factory=lambda: array("q"))  # every message seq in arrival order, all sockets
    live_gaps: int = 0  # a seq past last+1 on a socket that was already synced
    replay_gaps: int = 0  # a seq past last+1 while a resume replayed (before `synced`)
    sockets: int = 0  # sockets that reached `synced`
    failed_connects: int = 0
    losses: list[tuple[float, float | None, int | None]] = field(default_factory=list)  # (lost at, synced at, code)
    first_synced_at: float | None = None
    resumes: list[tuple[int, int]] = field(default_factory=list)  # (after_seq asked, synced last_seq) per socket


@dataclass
class WorkerReport:
    worker: int
    members: list[MemberRecord] = field(default_factory=list)
    delivered_at: array = field(default_factory=lambda: array("d"))  # monotonic s of each live message received
    delivery_ms: array = field(default_factory=lambda: array("d"))  # pairs with delivered_at
    replayed_at: array = field(default_factory=lambda: array("d"))  # the same for frames replayed on a resume
    replayed_ms: array = field(default_factory=lambda: array("d"))
    acked: list[tuple[int, str, int, float]] = field(default_factory=list)  # (room, client_id, seq, acked at)
    sent: int = 0
    resends: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    unacked_at_end: int = 0
    drain_timed_out: bool = False
    client_cpu_seconds: float = 0.0


def sent_ns(client_id: str) -> int:
    """The monotonic send time that a bench client_id starts with ("<ns>.<worker>.<member>.<n>"), else 0."""
    head = client_id.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


class ResumingMember:
    """One member of one room: one socket at a time, resumed with after_seq whenever it is lost."""

    def __init__(self, index: int, room_id: int, url: str, report: WorkerReport, deflate: bool) -> None:
        self.index = index
        self.room_id = room_id
        self.url = url  # ...?access_token=T (after_seq is added per connect)
        self.report = report
        self.deflate = deflate
        self.record = MemberRecord(room_id)
        self.last_seq = 0
        self.asked_after = 0
        self.socket: WebSocketClient | None = None
        self.synced = False  # the current socket sent `synced`
        self.first_synced: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.unacked: dict[str, str] = {}  # client_id -> body, until acked
        self.retry: set[str] = set()  # client_ids the server answered `unavailable`
        self.written: set[str] = set()  # unacked client_ids written to some socket at least once
        self.stopping = False
        self.changed = asyncio.Event()

    # --- frames -------------------------------------------------------------------------------------
    def on_text(self, data: bytes) -> None:
        frame = json.loads(data)
        kind = frame.get("type")
        if kind == "message":
            message = frame["message"]
            seq = int(message["seq"])
            self.record.seqs.append(seq)
            if seq > self.last_seq + 1:
                if self.synced:
                    self.record.live_gaps += 1
                else:
                    self.record.replay_gaps += 1
            if seq > self.last_seq:
                self.last_seq = seq
            ns = sent_ns(str(message.get("client_id") or ""))
            if ns:
                now = time.monotonic_ns()
                if self.synced:
                    self.report.delivered_at.append(now / 1e9)
                    self.report.delivery_ms.append((now - ns) / 1e6)
                else:  # a resume's replay: how late the member got it, not how fast the live path is
                    self.report.replayed_at.append(now / 1e9)
                    self.report.replayed_ms.append((now - ns) / 1e6)
        elif kind == "synced":
            self.synced = True
            self.record.sockets += 1
            now = time.monotonic()
            if self.record.first_synced_at is None:
                self.record.first_synced_at = now
            self.record.resumes.append((self.asked_after, int(frame.get("last_seq") or 0)))
            # every loss since the last `synced` (a socket can be lost again before it synced) ends here
            for i in range(len(self.record.losses) - 1, -1, -1):
                lost_at, synced_at, code = self.record.losses[i]
                if synced_at is not None:
                    break
                self.record.losses[i] = (lost_at, now, code)
            if not self.first_synced.done():
                self.first_synced.set_result(None)
            self.resend_all()
        elif kind == "ack":
            client_id = str(frame.get("client_id"))
            if self.unacked.pop(client_id, None) is not None:
                self.retry.discard(client_id)
                self.written.discard(client_id)
                self.report.acked.append((self.room_id, client_id, int(frame["seq"]), time.monotonic()))
        elif kind == "error":
            code = str(frame.get("code"))
            self.report.errors[code] = self.report.errors.get(code, 0) + 1
            client_id = frame.get("client_id")
            if code == "unavailable" and client_id in self.unacked:
                self.retry.add(client_id)
        self.changed.set()

    # --- sending ------------------------------------------------------------------------------------
    def send(self, client_id: str, body: str) -> None:
        self.unacked[client_id] = body
        self.report.sent += 1
        if self.socket is not None and self.synced and self.socket.is_open:
            self.written.add(client_id)
            self.socket.send_json({"type": "send", "client_id": client_id, "body": body})

    def resend_all(self) -> None:
        """After a resync: everything not acked yet, again with its client_id (stored at most once)."""
        if self.socket is None:
            return
        for client_id, body in self.unacked.items():
            if client_id in self.written:
                self.report.resends += 1
            self.written.add(client_id)
            self.socket.send_json({"type": "send", "client_id": client_id, "body": body})
        self.retry.clear()

    async def retry_loop(self) -> None:
        while not self.stopping:
            await asyncio.sleep(UNAVAILABLE_RETRY_SECONDS)
            if self.retry and self.socket is not None and self.synced and self.socket.is_open:
                for client_id in list(self.retry):
                    body = self.unacked.get(client_id)
                    if body is not None:
                        self.report.resends += 1
                        self.socket.send_json({"type": "send", "client_id": client_id, "body": body})
                self.retry.clear()

    # --- socket life --------------------------------------------------------------------------------
    async def run(self, gate: asyncio.Semaphore) -> None:
        while not self.stopping:
            self.asked_after = self.last_seq
            url = f"{self.url}&after_seq={self.last_seq}"
            try:
                async with gate:
                    socket = await connect(url, self.on_text, deflate=self.deflate, timeout=30.0)
            except (OSError, TimeoutError, ValueError):
                self.record.failed_connects += 1
                await asyncio.sleep(0.5)
                continue
            self.socket = socket
            code = await socket.closed
            self.synced = False
            self.socket = None
            if self.stopping:
                break
            self.record.losses.append((time.monotonic(), None, code))
            await asyncio.sleep(RECONNECT_DELAY_SECONDS)

    async def stop(self) -> None:
        self.stopping = True
        if self.socket is not None:
            await self.socket.close()


def enter_namespace(name: str) -> None:
    """Move this process into the network namespace `ip netns` calls `name` (root only)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


async def run_worker(spec: ClusterSpec, control: Any) -> WorkerReport:
    """Connect every member (until each is synced), then follow the parent's commands on `control`:
    control.wait("go") / control.stopped() / control.drain_targets() -> {room: last_seq} / control.wait("close")."""
    report = WorkerReport(worker=spec.worker)
    gate = asyncio.Semaphore(spec.connect_concurrency)
    members: list[ResumingMember] = []
    senders: list[tuple[ResumingMember, float]] = []
    for part in spec.rooms:
        url = f"{spec.ws_base.rstrip('/')}/ws/rooms/{part.room_id}/?access_token="
        for i, token in enumerate(part.tokens):
            member = ResumingMember(len(members), part.room_id, url + token, report, spec.deflate)
            members.append(member)
            if i < part.senders:
                senders.append((member, part.rate))
    tasks = [asyncio.ensure_future(m.run(gate)) for m in members]
    retries = [asyncio.ensure_future(m.retry_loop()) for m, _rate in senders]

    pinger = asyncio.ensure_future(keep_alive(members))
    await asyncio.wait([asyncio.ensure_future(asyncio.shield(m.first_synced)) for m in members], timeout=240)
    await control.ready(sum(1 for m in members if m.first_synced.done()))
    await control.wait("go")
    cpu_start = time.process_time()
    started = time.monotonic()
    stop = asyncio.Event()

    async def send_loop(number: int, member: ResumingMember, rate: float) -> None:
        interval = 1.0 / rate
        # Spread the senders' phases (no synchronized bursts that no real chat produces).
        next_at = started + ((number * 0.618 + spec.worker * 0.37) % 1.0) * interval
        n = 0
        while not stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            next_at += interval
            client_id = f"{time.monotonic_ns()}.{spec.worker}.{member.index}.{n}"
            member.send(client_id, make_body(spec.body_bytes, n))
            n += 1

    loops = [asyncio.ensure_future(send_loop(i, m, r)) for i, (m, r) in enumerate(senders)]
    await control.wait("stop")
    stop.set()
    await asyncio.gather(*loops)
    # Every send acked (resends continue through the retry loops and resyncs), at most 60 s.
    deadline = time.monotonic() + 60.0
    while any(m.unacked for m, _r in senders) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    report.unacked_at_end = sum(len(m.unacked) for m, _r in senders)
    for member, _rate in senders:
        # Give up on what is still unacked: a resend stored after the parent read the rooms' last_seq (the
        # drain's target) would reach some members after the run and count as lost.
        member.unacked.clear()
        member.retry.clear()
    targets = await control.stopped()
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        if all(m.last_seq >= targets.get(m.room_id, 0) and m.synced for m in members):
            break
        await asyncio.sleep(0.1)
    else:
        report.drain_timed_out = True
    report.client_cpu_seconds = time.process_time() - cpu_start
    await control.drained()
    await control.wait("close")
    pinger.cancel()
    for task in retries:
        task.cancel()
    await asyncio.gather(*(m.stop() for m in members), return_exceptions=True)
    await asyncio.wait(tasks, timeout=10)
    report.members = [m.record for m in members]
    return report


class _ProcessControl:
    """The worker's side of the parent's queues and events (blocking calls go to a thread)."""

    def __init__(self, worker: int, up: Any, events: dict[str, Any], targets: Any) -> None:
        self.worker, self.up, self.events, self.targets = worker, up, events, targets

    async def _blocking(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)

    async def ready(self, synced: int) -> None:
        self.up.put(("ready", self.worker, synced))

    async def wait(self, name: str) -> None:
        await self._blocking(self.events[name].wait)

    async def stopped(self) -> dict[int, int]:
        self.up.put(("stopped", self.worker, None))
        return dict(await self._blocking(self.targets.get))

    async def drained(self) -> None:
        self.up.put(("drained", self.worker, None))


def _process_main(spec: ClusterSpec, up: Any, events: dict[str, Any], targets: Any, results: Any) -> None:
    if spec.namespace:
        enter_namespace(spec.namespace)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a runtime dependency
        pass
    report = asyncio.run(run_worker(spec, _ProcessControl(spec.worker, up, events, targets)))
    results.put(report)


class Workers:
    """Client worker processes ('spawn'), driven phase by phase by the parent."""

    def __init__(self, specs: list[ClusterSpec]) -> None:
        context = multiprocessing.get_context("spawn")
        self.up = context.Queue()
        self.results = context.Queue()
        self.events = {name: context.Event() for name in ("go", "stop", "close")}
        self.targets = [context.Queue() for _ in specs]
        self.processes = [
            context.Process(
                target=_process_main, args=(spec, self.up, self.events, self.targets[i], self.results), daemon=True
            )
            for i, spec in enumerate(specs)
        ]
        self.count = len(specs)

    def start(self, timeout: float = 300.0) -> int:
        """Start the workers; returns once each reported its members synced (the number synced)."""
        for process in self.processes:
            process.start()
        return sum(self._collect("ready", timeout))

    def _collect(self, kind: str, timeout: float) -> list[Any]:
        values = []
        while len(values) < self.count:
            got, _worker, value = self.up.get(timeout=timeout)
            if got != kind:
                raise RuntimeError(f"worker said {got} while waiting for {kind}")
            values.append(value)
        return values

    def go(self) -> None:
        self.events["go"].set()

    def stop(self, targets: Any, timeout: float = 120.0) -> None:
        """Stop sending; once every worker's sends are acked, `targets()` -> {room: last_seq} is handed out
        and the workers drain to it."""
        self.events["stop"].set()
        self._collect("stopped", timeout)
        room_targets = targets()
        for queue in self.targets:
            queue.put(room_targets)
        self._collect("drained", timeout)

    def close(self, timeout: float = 120.0) -> list[WorkerReport]:
        self.events["close"].set()
        reports = [self.results.get(timeout=timeout) for _ in self.processes]
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        return sorted(reports, key=lambda r: r.worker)

    def kill(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()


# --- the judge and the windows (pure) ---------------------------------------------------------------
def judge(
    members: list[MemberRecord], last_seq_by_room: dict[int, int], drain_targets: dict[int, int] | None = None
) -> dict[str, int]:
    """Every member must have received every seq 1..last_seq of its room once, in increasing order.
    `drain_targets`: the last_seq each room had when the members were drained to it; a seq lost past it was
    stored after the drain (a resend that committed late), not lost by a socket."""
    lost = duplicates = out_of_order = expected = received = lost_past_target = 0
    for record in members:
        last = last_seq_by_room.get(record.room_id, 0)
        expected += last
        seen: set[int] = set()
        previous = 0
        for seq in record.seqs:
            if seq in seen:
                duplicates += 1
            elif seq < previous:
                out_of_order += 1
            seen.add(seq)
            previous = max(previous, seq)
        got = sum(1 for seq in seen if 1 <= seq <= last)
        received += got
        lost += last - got
        if drain_targets is not None:
            target = drain_targets.get(record.room_id, 0)
            lost_past_target += sum(1 for seq in range(target + 1, last + 1) if seq not in seen)
    return {
        "members": len(members),
        "expected_deliveries": expected,
        "received_deliveries": received,
        "lost_deliveries": lost,
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "lost_past_drain_target": lost_past_target,
        "live_gaps": sum(r.live_gaps for r in members),
        "replay_gaps": sum(r.replay_gaps for r in members),
        "members_never_synced": sum(1 for r in members if r.first_synced_at is None),
    }


def window(delivered_at: list[float], delivery_ms: list[float], start: float, end: float) -> dict[str, Any]:
    """Deliveries received in [start, end): their rate and latency percentiles."""
    latencies = [ms for at, ms in zip(delivered_at, delivery_ms, strict=True) if start <= at < end]
    seconds = end - start
    return {
        "seconds": round(seconds, 2),
        "deliveries": len(latencies),
        "deliveries_per_second": round(len(latencies) / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": _round(percentile(latencies, 0.50)),
        "p99_ms": _round(percentile(latencies, 0.99)),
        "max_ms": _round(max(latencies) if latencies else None),
    }


def recovery(members: list[MemberRecord], failed_at: float, until: float) -> dict[str, Any]:
    """The sockets lost in [failed_at, until) and how long until the last of them was synced again."""
    lost = [(at, synced) for r in members for at, synced, _code in r.losses if failed_at <= at < until]
    codes: dict[str, int] = {}
    for r in members:
        for at, _synced, code in r.losses:
            if failed_at <= at < until:
                codes[str(code)] = codes.get(str(code), 0) + 1
    resynced = [synced for _at, synced in lost if synced is not None]
    return {
        "sockets_lost": len(lost),
        "members_lost": sum(1 for r in members if any(failed_at <= at < until for at, _s, _c in r.losses)),
        "never_resynced": len(lost) - len(resynced),
        "close_codes": codes,
        "failure_to_first_loss_s": _round(min(at for at, _s in lost) - failed_at) if lost else None,
        "failure_to_last_resynced_s": _round(max(resynced) - failed_at) if resynced else None,
    }


def first_ack_after(acked_at: list[float], moment: float) -> float | None:
    """Seconds from `moment` to the first ack received after it (chat going on)."""
    later = [at for at in acked_at if at >= moment]
    return round(min(later) - moment, 3) if later else None


def sent_in_reached_all(
    delivered_at: list[float], delivery_ms: list[float], start: float, seconds: float = 1.0
) -> float | None:
    """Seconds from `start` until the last delivery of the messages sent in [start, start + seconds): when
    what was said as the failure struck had reached every member (resumes and gap fills included)."""
    last = None
    for at, ms in zip(delivered_at, delivery_ms, strict=True):
        sent = at - ms / 1000.0
        if start <= sent < start + seconds and (last is None or at > last):
            last = at
    return round(last - start, 3) if last is not None else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
