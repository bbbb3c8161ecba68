"""chat_bench scenarios of the message lifecycle: what an edit, a deletion or a reaction costs the server next
to a send, and how fast a resume replays changes next to new messages.

`change_costs`: one room, the same members, actors and rate for each operation in turn (send first, which
makes the messages the later phases change; delete last, which removes them). Each phase is measured alone:
the server's CPU from the first operation until every socket holds the phase's last seq, per operation and
per delivery (every operation reaches every member as one frame).

`replay_changes`: two rooms of the same size; in one, `changes` new messages follow the point a client
resumes from; in the other, `changes` edits and reactions to existing messages (each on a different message,
so that none supersedes another and both replays send the same number of frames). Clients resume in each,
round after round, alternating; time from the socket's open to `synced`, and frames per second.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections

from rooms.models import Room

from . import seeding
from .client import WebSocketClient, connect, require_loopback
from .fanout import make_body, percentile
from .scenarios import BenchRoom, drop_room, prepare_room, warm_up
from .servers import CpuSnapshot, loadavg

# "delete" removes the messages that "edit" and "react" changed (its edit history, reaction and their stored
# events go too); "resend" sends a fresh set and "plain_delete" deletes those: a deletion of a message that
# was never changed, the like-for-like comparison with a send.
OPERATIONS = ("send", "edit", "react", "delete", "resend", "plain_delete")
SENDS = ("send", "resend")


def _seq_of(frame: dict[str, Any]) -> int:
    kind = frame.get("type")
    if kind == "message":
        return int(frame["message"]["seq"])
    if kind == "message.updated":
        return int(frame["seq"])
    return 0


class _Socket:
    """One member socket: the newest seq it holds, and the answers its own operations got."""

    def __init__(self) -> None:
        self.sock: WebSocketClient | None = None
        self.max_seq = 0
        self.pong: asyncio.Future[None] | None = None
        self.waiting: dict[str, float] = {}  # client_id or "m<message id>" -> sent at (monotonic)
        self.answered_ms: list[float] = []
        self.acked_ids: list[int] = []
        self.errors: dict[str, int] = {}
        self.last_frame_at = 0.0

    def on_text(self, data: bytes) -> None:
        frame = json.loads(data)
        self.last_frame_at = time.monotonic()
        seq = _seq_of(frame)
        if seq:
            self.max_seq = max(self.max_seq, seq)
        kind = frame.get("type")
        key = None
        if kind == "ack":
            key = str(frame.get("client_id"))
            if key in self.waiting:
                self.acked_ids.append(int(frame["id"]))
        elif kind == "message.updated":
            key = f"m{frame['message']['id']}"
        elif kind == "error":
            code = str(frame.get("code"))
            self.errors[code] = self.errors.get(code, 0) + 1
            key = str(frame.get("client_id")) if frame.get("client_id") else f"m{frame.get('message_id')}"
        elif kind == "pong" and self.pong is not None and not self.pong.done():
            self.pong.set_result(None)
        if key is not None and key in self.waiting:
            self.answered_ms.append((time.monotonic() - self.waiting.pop(key)) * 1000)


def _operation_frame(operation: str, n: int, targets: list[int], body_bytes: int) -> tuple[str, dict[str, Any]]:
    """(the key its answer comes under, the frame) of an actor's n-th operation of a phase."""
    if operation in SENDS:
        client_id = f"{uuid.uuid4().hex[:12]}.{n}"
        return client_id, {"type": "send", "client_id": client_id, "body": make_body(body_bytes, n)}
    target = targets[n % len(targets)]
    if operation == "edit":
        return f"m{target}", {"type": "edit", "message_id": target, "body": make_body(body_bytes, n + 1_000_003)}
    if operation == "react":
        return f"m{target}", {"type": "react", "message_id": target, "emoji": "thumbsup", "on": True}
    return f"m{target}", {"type": "delete", "message_id": target}


def change_costs(
    base_url: str,
    *,
    members: int,
    actors: int,
    rate: float,
    operations: int,
    server_pids: list[int] | None = None,
    body_bytes: int = 100,
    deflate: bool = True,
    settle: float = 1.0,
    drain_max: float = 60.0,
) -> dict[str, Any]:
    """Server CPU per send, edit, reaction and deletion through the chat sockets, at the same room size and rate:
    `actors` members each do `operations` operations of each kind at `rate` per second, in that order."""
    require_loopback(base_url)
    actors = max(1, min(actors, members))
    pids = server_pids or []
    if pids:
        warm_up(base_url, deflate=deflate)
    room = prepare_room(members)
    close_old_connections()
    phases: list[dict[str, Any]] = []

    async def run() -> None:
        url = room.ws_url(base_url)
        sockets = [_Socket() for _ in room.tokens]
        gate = asyncio.Semaphore(100)

        async def open_one(state: _Socket, token: str) -> None:
            async with gate:
                state.sock = await connect(f"{url}?access_token={token}", state.on_text, deflate=deflate)
                state.pong = asyncio.get_running_loop().create_future()
                state.sock.send_json({"type": "ping"})
                await asyncio.wait_for(state.pong, 60)

        await asyncio.gather(*(open_one(s, t) for s, t in zip(sockets, room.tokens, strict=True)))
        targets: list[list[int]] = [[] for _ in range(actors)]
        try:
            for operation in OPERATIONS:
                await asyncio.sleep(settle)  # the previous phase's closing work is not charged to this one
                phases.append(await phase(operation, sockets, targets))
                if operation in SENDS:
                    targets = [list(s.acked_ids)[-operations:] for s in sockets[:actors]]
        finally:
            await asyncio.gather(*(s.sock.close() for s in sockets if s.sock is not None), return_exceptions=True)

    async def phase(operation: str, sockets: list[_Socket], targets: list[list[int]]) -> dict[str, Any]:
        for state in sockets:
            state.answered_ms, state.errors = [], {}
        load = loadavg()
        start = CpuSnapshot.take(pids)
        began = time.monotonic()
        interval = 1.0 / rate if rate > 0 else 0.0

        async def act(index: int, state: _Socket) -> None:
            next_at = began + interval * index / actors  # phases spread over the interval
            for n in range(operations):
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                key, frame = _operation_frame(operation, n, targets[index], body_bytes)
                state.waiting[key] = time.monotonic()
                assert state.sock is not None
                state.sock.send_json(frame)
                next_at += interval
            while state.waiting and time.monotonic() - began < drain_max:
                await asyncio.sleep(0.01)

        await asyncio.gather(*(act(i, s) for i, s in enumerate(sockets[:actors])))
        newest = max(s.max_seq for s in sockets)
        while any(s.max_seq < newest for s in sockets) and time.monotonic() - began < drain_max:
            await asyncio.sleep(0.005)
        drained = CpuSnapshot.take(pids)
        seconds = time.monotonic() - began
        server_cpu, machine_cpu = drained.since(start)
        answered = sum(len(s.answered_ms) for s in sockets[:actors])
        errors: dict[str, int] = {}
        for state in sockets:
            for code, count in state.errors.items():
                errors[code] = errors.get(code, 0) + count
        done = answered - sum(errors.values())
        deliveries = done * len(sockets)
        latencies = [ms for s in sockets[:actors] for ms in s.answered_ms]
        result: dict[str, Any] = {
            "operation": operation,
            "operations": done,
            "unanswered": actors * operations - answered,
            "errors": errors,
            "seconds": round(seconds, 3),
            "deliveries": deliveries,
            "behind_after_drain": sum(1 for s in sockets if s.max_seq < newest),
            "answer_p50_ms": _r(percentile(latencies, 0.5)),
            "answer_p99_ms": _r(percentile(latencies, 0.99)),
            "machine_cpu_us_per_operation": round(machine_cpu / done * 1e6) if done else None,
            "loadavg_at_start": load,
        }
        if pids:
            result["server_cpu_seconds"] = round(server_cpu, 3)
            result["server_cpu_us_per_operation"] = round(server_cpu / done * 1e6) if done else None
            result["server_cpu_us_per_delivery"] = round(server_cpu / deliveries * 1e6, 1) if deliveries else None
        return result

    try:
        asyncio.run(run())
    finally:
        drop_room(room.room_id)
    summary: dict[str, Any] = {
        "members": members,
        "actors": actors,
        "rate_per_actor": rate,
        "operations_per_actor": operations,
        "phases": phases,
    }
    send = next((p for p in phases if p["operation"] == "send"), None)
    key = "server_cpu_us_per_operation" if pids else "machine_cpu_us_per_operation"
    if send and send.get(key):
        summary["cpu_ratio_to_send"] = {
            p["operation"]: round(p[key] / send[key], 2) for p in phases if p.get(key) is not None
        }
        summary["cpu_ratio_measure"] = key
    return summary


# --- replay of changes against replay of messages ---------------------------------------------------------
def _replay_room(members: int, history: int, changes: int, kind: str) -> tuple[BenchRoom, int, int]:
    """(room, the seq clients resume after, the room's last seq). kind "messages": `history` messages, then
    `changes` more; "changes": `history` messages (at least `changes`), then a change to each of `changes`."""
    room = prepare_room(members)
    authors = room.user_ids[: min(len(room.user_ids), 50)]
    if kind == "messages":
        seeding.ensure_messages([seeding.MessagePlan(room.room_id, history, authors)])
        after = Room.objects.values_list("last_seq", flat=True).get(pk=room.room_id)
        seeding.ensure_messages([seeding.MessagePlan(room.room_id, history + changes, authors)])
    else:
        seeding.ensure_messages([seeding.MessagePlan(room.room_id, max(history, changes), authors)])
        after = Room.objects.values_list("last_seq", flat=True).get(pk=room.room_id)
        seeding.ensure_changes(room.room_id, changes, reactors=authors)
    last = Room.objects.values_list("last_seq", flat=True).get(pk=room.room_id)
    return room, after, last


def replay_changes(
    base_url: str,
    *,
    changes: int,
    history: int = 0,
    clients: int = 1,
    rounds: int = 2,
    members: int = 20,
    deflate: bool = True,
    server_pids: list[int] | None = None,
    on_round: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Resume after `changes` new messages against after `changes` edits and reactions of existing messages."""
    require_loopback(base_url)
    pids = server_pids or []
    clients = max(1, min(clients, members))
    rooms = {kind: _replay_room(members, history, changes, kind) for kind in ("messages", "changes")}
    close_old_connections()
    runs: dict[str, list[dict[str, Any]]] = {"messages": [], "changes": []}

    async def resume(room: BenchRoom, after: int, last: int) -> dict[str, Any]:
        url = room.ws_url(base_url)

        async def one(token: str) -> tuple[float, list[int], bool]:
            seqs: list[int] = []
            synced = asyncio.get_running_loop().create_future()

            def on_text(data: bytes) -> None:
                frame = json.loads(data)
                seq = _seq_of(frame)
                if seq:
                    seqs.append(seq)
                elif frame.get("type") == "synced" and not synced.done():
                    synced.set_result(int(frame["last_seq"]))

            began = time.monotonic()
            sock = await connect(f"{url}?access_token={token}&after_seq={after}", on_text, deflate=deflate)
            last_seq = await asyncio.wait_for(synced, 300)
            elapsed = time.monotonic() - began
            await sock.close()
            return elapsed, seqs, last_seq == last

        start = CpuSnapshot.take(pids)
        began = time.monotonic()
        outcomes = await asyncio.gather(*(one(t) for t in room.tokens[:clients]))
        seconds = time.monotonic() - began
        server_cpu, _ = CpuSnapshot.take(pids).since(start)
        frames = sum(len(seqs) for _, seqs, _ in outcomes)
        times = [elapsed for elapsed, _, _ in outcomes]
        result = {
            "frames_per_client": len(outcomes[0][1]),
            # Every seq after the resume point once, in order: each change is on a message of its own.
            "wrong_streams": sum(1 for _, seqs, ok in outcomes if not ok or seqs != list(range(after + 1, last + 1))),
            "synced_p50_ms": _r(percentile([t * 1000 for t in times], 0.5)),
            "seconds": round(seconds, 3),
            "frames_per_second": round(frames / seconds) if seconds else None,
            "loadavg_at_start": loadavg(),
        }
        if pids:
            result["server_cpu_us_per_frame"] = round(server_cpu / frames * 1e6, 1) if frames else None
        return result

    try:
        for round_number in range(rounds):
            order = ("messages", "changes") if round_number % 2 == 0 else ("changes", "messages")
            for kind in order:
                room, after, last = rooms[kind]
                outcome = asyncio.run(resume(room, after, last))
                runs[kind].append(outcome)
                if on_round is not None:
                    on_round(kind, outcome)
    finally:
        for room, _, _ in rooms.values():
            drop_room(room.room_id)

    def best(kind: str, key: str) -> Any:
        values = [r[key] for r in runs[kind] if r.get(key) is not None]
        return max(values) if values else None

    summary: dict[str, Any] = {"changes": changes, "history": history, "clients": clients, "rounds": rounds}
    for kind in ("messages", "changes"):
        summary[kind] = {
            "frames_per_client": runs[kind][0]["frames_per_client"] if runs[kind] else 0,
            "wrong_streams": sum(r["wrong_streams"] for r in runs[kind]),
            "best_frames_per_second": best(kind, "frames_per_second"),
            "synced_p50_ms_per_round": [r["synced_p50_ms"] for r in runs[kind]],
            "frames_per_second_per_round": [r["frames_per_second"] for r in runs[kind]],
            "server_cpu_us_per_frame_per_round": [r.get("server_cpu_us_per_frame") for r in runs[kind]],
            "loadavg_per_round": [r["loadavg_at_start"] for r in runs[kind]],
        }
    fast_messages, fast_changes = (
        summary["messages"]["best_frames_per_second"],
        summary["changes"]["best_frames_per_second"],
    )
    if fast_messages and fast_changes:
        summary["changes_speed_ratio"] = round(fast_changes / fast_messages, 2)
    return summary


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
