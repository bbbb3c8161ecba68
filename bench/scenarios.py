"""The chat_bench scenarios: set up rows in the database the server uses, drive the server, return figures.

Setup writes rows directly (seeding.py) and mints access tokens with simplejwt (same signing key as the
server), so that neither PBKDF2 nor the join path is part of a measurement that is not about them. Every
scenario is bounded in sockets, requests and seconds, and targets loopback only (client.require_loopback).
Sockets offer permessage-deflate as browsers do unless `deflate=False`; results count the sockets on which
the server accepted it (`deflate_sockets`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from messaging.models import Attachment, Mention, Message, MessageEdit, Reaction
from presence.backends import get_presence_backend
from rooms.models import MAX_MAX_PERSONNEL, Membership, Room

from . import seeding
from .client import connect, http_json, require_loopback
from .fanout import FanoutSpec, percentile, run_in_process, run_in_processes, summarize
from .servers import CpuSnapshot, loadavg, process_rss_bytes

BENCH_USER_PREFIX = "bench-"
BENCH_PASSWORD = "bench-password-1"


@dataclass
class BenchRoom:
    room_id: int
    user_ids: list[int]
    tokens: list[str] = field(default_factory=list)

    def ws_url(self, base_url: str) -> str:
        return base_url.replace("http://", "ws://", 1).rstrip("/") + f"/ws/rooms/{self.room_id}/"


def tokens_for(user_ids: list[int]) -> list[str]:
    users = {u.pk: u for u in User.objects.filter(pk__in=user_ids)}
    return [str(AccessToken.for_user(users[uid])) for uid in user_ids]


def prepare_room(
    members: int, *, seats: int | None = None, with_members: bool = True, first_user: int = 0
) -> BenchRoom:
    """A fresh room; `members` bench users from the `first_user`-th on (created once, reused), all active
    members unless told not."""
    user_ids, _ = seeding.ensure_users(BENCH_USER_PREFIX, first_user + members, BENCH_PASSWORD)
    user_ids = user_ids[first_user:]
    seats = max(2, min(MAX_MAX_PERSONNEL, seats if seats is not None else members))
    room = Room.objects.create(
        title=f"bench {members} {timezone.now():%H:%M:%S.%f}", owner_id=user_ids[0], max_personnel=seats
    )
    if with_members:
        now = timezone.now()
        Membership.objects.bulk_create(
            [Membership(room_id=room.pk, user_id=uid, is_active=True, joined_at=now) for uid in user_ids],
            batch_size=2000,
        )
        seeding.recount_personnel([room.pk])
    bench_room = BenchRoom(room.pk, user_ids)
    bench_room.tokens = tokens_for(user_ids)
    return bench_room


def drop_room(room_id: int) -> None:
    """Remove a bench room and its rows without the ORM cascade (which would load every message; only its
    attachments go through the ORM, whose deletion removes their files), and its
    presence records: a served app stopped while its sockets were still closing leaves them, and the next
    run's server would spend its idle time reaping them (500 per beat) instead of idling."""
    with transaction.atomic():
        Attachment.objects.filter(room_id=room_id).delete()  # row by row: their files go after commit
        for rows in (MessageEdit, Reaction, Mention):  # what refers to the room's messages goes first
            rows.objects.filter(message__room_id=room_id)._raw_delete(connection.alias)
        Message.objects.filter(room_id=room_id).update(reply_to=None)
        Message.objects.filter(room_id=room_id)._raw_delete(connection.alias)
        Membership.objects.filter(room_id=room_id)._raw_delete(connection.alias)
        Room.objects.filter(pk=room_id).delete()
    get_presence_backend().forget_room(room_id)


def warm_up(base_url: str, *, deflate: bool = True, timeout: float = 30.0) -> None:
    """One message through a fresh two-member room, so that what a server process pays once (the hub, pools,
    caches, the send path's first run, zlib) is not charged per socket to the sockets measured next."""
    room = prepare_room(2)
    close_old_connections()
    url = room.ws_url(base_url)

    async def one_message() -> None:
        loop = asyncio.get_running_loop()
        pongs = [loop.create_future(), loop.create_future()]
        delivered = loop.create_future()

        def listener(index: int) -> Callable[[bytes], None]:
            def on_text(data: bytes) -> None:
                kind = json.loads(data).get("type")
                if kind == "pong" and not pongs[index].done():
                    pongs[index].set_result(None)
                elif kind == "message" and index == 1 and not delivered.done():
                    delivered.set_result(None)

            return on_text

        sockets = [
            await connect(f"{url}?access_token={token}", listener(i), deflate=deflate)
            for i, token in enumerate(room.tokens)
        ]
        try:
            for sock in sockets:
                sock.send_json({"type": "ping"})
            await asyncio.wait_for(asyncio.gather(*pongs), timeout)
            sockets[0].send_json({"type": "send", "client_id": str(uuid.uuid4()), "body": "warm-up"})
            await asyncio.wait_for(delivered, timeout)
        finally:
            await asyncio.gather(*(sock.close() for sock in sockets), return_exceptions=True)

    try:
        asyncio.run(one_message())
    finally:
        drop_room(room.room_id)


def total_rss_bytes(pids: list[int]) -> int:
    return sum(process_rss_bytes(pid) for pid in pids)


# --- fan-out ---------------------------------------------------------------------------------------------
def fanout(
    base_url: str,
    *,
    members: int,
    senders: int,
    duration: float,
    rate: float = 0.0,
    window: int = 1,
    processes: int = 1,
    server_pids: list[int] | None = None,
    body_bytes: int = 100,
    on_started: Callable[[], None] | None = None,
    keep_timeline: bool = False,
    deflate: bool = True,
    messages: int = 0,
) -> tuple[dict[str, Any], list[Any]]:
    """N members in one room, S senders; returns (summary, raw reports).

    With `server_pids`, the servers' CPU is counted from the moment every socket is open to the moment every
    socket has drained (not the closing that follows, reported apart), and their resident memory is read
    before connecting (after a warm-up message), once every socket is open, and after the traffic was
    delivered, while the sockets are still open: memory per socket idle and after traffic."""
    require_loopback(base_url)
    senders = max(0, min(senders, members))
    pids = server_pids or []
    if pids:
        warm_up(base_url, deflate=deflate)
    room = prepare_room(members)
    close_old_connections()
    parts = max(1, processes)
    # Deal sockets round-robin; each worker's senders are its first sockets.
    token_parts = [room.tokens[i::parts] for i in range(parts)]
    sender_parts = [len(range(i, senders, parts)) for i in range(parts)]
    specs = [
        FanoutSpec(
            ws_url=room.ws_url(base_url),
            tokens=token_parts[i],
            sender_count=sender_parts[i],
            duration=duration,
            rate=rate,
            window=window,
            worker=i,
            body_bytes=body_bytes,
            keep_timeline=keep_timeline,
            deflate=deflate,
            messages=messages,
        )
        for i in range(parts)
        if token_parts[i]
    ]
    snapshots: dict[str, Any] = {"rss_before": total_rss_bytes(pids)}

    def started() -> None:
        snapshots["rss_connected"] = total_rss_bytes(pids)
        snapshots["start"] = CpuSnapshot.take(pids)
        snapshots["loadavg"] = loadavg()
        if on_started is not None:
            on_started()

    def drained() -> None:
        snapshots["drained"] = CpuSnapshot.take(pids)
        snapshots["rss_after_traffic"] = total_rss_bytes(pids)

    try:
        if processes <= 0:
            reports = asyncio.run(run_in_process(specs, started, drained))
        else:
            reports = run_in_processes(specs, started, on_all_drained=drained)
        end = CpuSnapshot.take(pids)
    finally:
        drop_room(room.room_id)
    summary: dict[str, Any] = {"members": members, "senders": senders, "rate": round(rate, 3), "window": window}
    summary.update(summarize(reports))
    server_cpu, machine_cpu = snapshots["drained"].since(snapshots["start"])
    deliveries = summary["deliveries"]
    if pids:
        summary["server_cpu_seconds"] = round(server_cpu, 3)
        summary["server_cpu_us_per_delivery"] = round(server_cpu / deliveries * 1e6, 1) if deliveries else None
        summary["deliveries_per_server_cpu_second"] = round(deliveries / server_cpu) if server_cpu > 0 else None
        summary["server_cpu_seconds_closing"] = round(end.since(snapshots["drained"])[0], 3)
        connected = max(1, summary["connected"])
        before = snapshots["rss_before"]
        summary["server_rss_before_mib"] = round(before / 2**20, 1)
        summary["server_rss_connected_mib"] = round(snapshots["rss_connected"] / 2**20, 1)
        summary["server_rss_after_traffic_mib"] = round(snapshots["rss_after_traffic"] / 2**20, 1)
        summary["kib_per_socket_connected"] = round((snapshots["rss_connected"] - before) / 1024 / connected, 1)
        summary["kib_per_socket_after_traffic"] = round((snapshots["rss_after_traffic"] - before) / 1024 / connected, 1)
    summary["machine_cpu_seconds"] = round(machine_cpu, 3)
    summary["loadavg_at_start"] = snapshots["loadavg"]
    summary["machine_cpu_us_per_delivery"] = round(machine_cpu / deliveries * 1e6, 1) if deliveries else None
    return summary, reports


# --- connect storm ---------------------------------------------------------------------------------------
# What a room page opens: its chat socket, its presence socket, and the sidebar's user socket.
PAGE_SOCKETS = ("/ws/rooms/{room}/", "/ws/rooms/{room}/presence/", "/ws/me/")
PAGE_ROOM_MEMBERS = 100
IDLE_WINDOW_SECONDS = 10.0


def count_redis_commands(seconds: float) -> Counter[str] | None:
    """The commands sent to the server's Redis database (settings.REDIS_URL) for `seconds`, by name, from
    MONITOR, whose lines name each command's database, so that other databases' clients on a shared Redis
    do not count; None without Redis. Read from a plain socket: MONITOR's lines are simple strings."""
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return None
    kwargs = redis.Redis.from_url(url).connection_pool.connection_kwargs
    db = kwargs.get("db", 0)
    counts: Counter[str] = Counter()
    with socket.create_connection((kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)), timeout=5) as conn:
        if kwargs.get("password"):
            conn.sendall(f"AUTH {kwargs['password']}\r\n".encode())
        conn.sendall(b"MONITOR\r\n")
        deadline = time.monotonic() + seconds
        buffer = b""
        while (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            *lines, buffer = (buffer + chunk).split(b"\r\n")
            for line in lines:
                # +1700000000.123456 [15 127.0.0.1:5000] "EVAL" "..."
                head, _, rest = line.partition(b"] ")
                if head.startswith(b"+") and head.partition(b"[")[2].split(b" ", 1)[0] == str(db).encode():
                    counts[rest.split(b" ", 1)[0].strip(b'"').decode("latin-1").upper()] += 1
    return counts


def connect_storm(
    base_url: str,
    *,
    sockets: int,
    concurrency: int = 200,
    hold: float = 2.0,
    server_pid: int | None = None,
    deflate: bool = True,
    page: bool = False,
) -> dict[str, Any]:
    """Open `sockets` sockets as fast as the server takes them, hold them idle for `hold` seconds: memory per
    idle socket from the server's RSS, the server's CPU and the Redis commands of its database while nothing
    is sent (after a short settling).

    `page`: each user opens what a room page opens (the chat socket, the room's presence socket and the
    sidebar's /ws/me/), so `sockets` are a third as many users, in rooms of PAGE_ROOM_MEMBERS (a presence
    socket's snapshot lists its whole room, and every arrival is a change for every watcher: one room of
    thousands would measure that, not idleness); otherwise one chat socket per user, all in one room.
    """
    require_loopback(base_url)
    kinds = PAGE_SOCKETS if page else PAGE_SOCKETS[:1]
    users = -(-sockets // len(kinds))
    size = PAGE_ROOM_MEMBERS if page else users
    rooms = [prepare_room(min(size, users - first), first_user=first) for first in range(0, users, size)]
    close_old_connections()
    ws_base = base_url.replace("http://", "ws://", 1).rstrip("/")
    urls = [
        f"{ws_base}{path.format(room=room.room_id)}?access_token={token}"
        for room in rooms
        for token in room.tokens
        for path in kinds
    ][:sockets]
    result: dict[str, Any] = {"sockets": sockets, "concurrency": concurrency, "page": page}

    async def storm() -> None:
        gate = asyncio.Semaphore(concurrency)
        opened: list[Any] = []
        failures: dict[str, int] = {}
        times: list[float] = []
        pongs = [0]  # every pong any socket received, for the refresh round below

        async def one(socket_url: str) -> None:
            async with gate:
                started = time.monotonic()
                pong = asyncio.get_running_loop().create_future()

                def on_text(data: bytes) -> None:
                    if b'"pong"' in data:
                        pongs[0] += 1
                        if not pong.done():
                            pong.set_result(None)

                try:
                    sock = await connect(socket_url, on_text, deflate=deflate)
                    sock.send_json({"type": "ping"})
                    await asyncio.wait_for(pong, 60)
                except (OSError, TimeoutError) as exc:
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                    return
                times.append((time.monotonic() - started) * 1000)
                opened.append(sock)

        # A few sockets first, so that what every process pays once (the hub, pools, caches, threads) is not
        # charged to the measured sockets.
        async def keep_alive() -> None:
            """As a page does: a ping every 30 s on each open socket, so that none reaches the server's idle
            limit while the rest are still opening (10,000 took over two minutes on a busy machine)."""
            while True:
                await asyncio.sleep(30)
                for sock in list(opened):
                    sock.send_json({"type": "ping"})

        warm = min(50, max(1, sockets // 20))
        pinger = asyncio.ensure_future(keep_alive())
        await asyncio.gather(*(one(u) for u in urls[:warm]))
        warmed = len(opened)
        result["loadavg_at_start"] = loadavg()
        await asyncio.sleep(1.0)
        rss_before = process_rss_bytes(server_pid) if server_pid else 0
        began = time.monotonic()
        await asyncio.gather(*(one(u) for u in urls[warm:]))
        seconds = time.monotonic() - began
        measured = len(opened) - warmed
        pinger.cancel()
        # The first sockets were opened long before the last (10,000 take a minute or more here): each sends
        # one ping now, as a page does every 30 s, so that none reaches the server's idle limit
        # (WS_IDLE_SECONDS) during the hold and the idle figure is of open sockets, not of closing ones.
        expected = pongs[0] + len(opened)
        for sock in opened:
            sock.send_json({"type": "ping"})
        deadline = time.monotonic() + 60
        while pongs[0] < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        result["refresh_pongs_missing"] = max(0, expected - pongs[0])
        settle = min(2.0, hold / 4)
        await asyncio.sleep(settle)
        pids = [server_pid] if server_pid else []
        idle_from = CpuSnapshot.take(pids)
        counting = asyncio.ensure_future(asyncio.to_thread(count_redis_commands, hold - settle))
        # The CPU of each IDLE_WINDOW_SECONDS too: work left over from the connect phase shows as a tail.
        windows, window_from = [], idle_from
        while not counting.done():
            await asyncio.wait([counting], timeout=IDLE_WINDOW_SECONDS)
            window_to = CpuSnapshot.take(pids)
            span = window_to.at - window_from.at
            windows.append(round(window_to.since(window_from)[0] / max(1e-9, span) * 100, 1))
            window_from = window_to
        redis_commands = counting.result()
        idle_cpu = CpuSnapshot.take(pids).since(idle_from)[0]
        rss_after = process_rss_bytes(server_pid) if server_pid else 0
        closed_early = sum(1 for s in opened if not s.is_open)
        await asyncio.gather(*(s.close() for s in opened), return_exceptions=True)
        result.update(
            {
                "opened": len(opened),
                "deflate_sockets": sum(1 for s in opened if s.deflate is not None),
                "failures": failures,
                "closed_while_idle": closed_early,
                "seconds": round(seconds, 3),
                "warm_up_sockets": warm,
                "sockets_per_second": round(measured / seconds, 1) if seconds else None,
                "open_p50_ms": _r(percentile(times, 0.5)),
                "open_p99_ms": _r(percentile(times, 0.99)),
            }
        )
        if server_pid:
            result["server_rss_before_mib"] = round(rss_before / 2**20, 1)
            result["server_rss_after_mib"] = round(rss_after / 2**20, 1)
            result["kib_per_idle_socket"] = round((rss_after - rss_before) / 1024 / max(1, measured), 1)
            result["idle_seconds_measured"] = round(hold - settle, 1)
            result["server_cpu_idle_percent_of_core"] = round(idle_cpu / max(1e-9, hold - settle) * 100, 2)
            result["server_cpu_idle_percent_by_window"] = windows
        if redis_commands is not None:
            result["redis_commands_per_second_idle"] = round(sum(redis_commands.values()) / (hold - settle), 2)
            result["redis_commands_idle"] = dict(redis_commands.most_common(8))

    try:
        asyncio.run(storm())
    finally:
        for room in rooms:
            drop_room(room.room_id)
    return result


# --- resume storm ----------------------------------------------------------------------------------------
def resume_storm(
    base_url: str, *, clients: int, history: int, after_seq: int = 0, concurrency: int = 1000, deflate: bool = True
) -> dict[str, Any]:
    """`clients` members reconnect at once with ?after_seq=N into a room with `history` messages: time to
    `synced` and whether each got exactly seq N+1..last_seq, in order, once."""
    require_loopback(base_url)
    room = prepare_room(clients)
    members = room.user_ids[: min(len(room.user_ids), 50)]
    seeding.ensure_messages([seeding.MessagePlan(room.room_id, history, members)])
    last_seq = Room.objects.values_list("last_seq", flat=True).get(pk=room.room_id)
    close_old_connections()
    url = room.ws_url(base_url)
    expected = list(range(after_seq + 1, last_seq + 1))
    result: dict[str, Any] = {"clients": clients, "history": history, "after_seq": after_seq, "last_seq": last_seq}

    async def storm() -> None:
        gate = asyncio.Semaphore(concurrency)
        times: list[float] = []
        wrong = 0
        failures = 0
        replayed = 0
        deflated = 0

        async def one(token: str) -> None:
            nonlocal wrong, failures, replayed, deflated
            seqs: list[int] = []
            synced = asyncio.get_running_loop().create_future()

            def on_text(data: bytes) -> None:
                frame = json.loads(data)
                if frame.get("type") == "message":
                    seqs.append(int(frame["message"]["seq"]))
                elif frame.get("type") == "synced" and not synced.done():
                    synced.set_result(int(frame["last_seq"]))

            async with gate:
                started = time.monotonic()
                try:
                    sock = await connect(f"{url}?access_token={token}&after_seq={after_seq}", on_text, deflate=deflate)
                    await asyncio.wait_for(synced, 120)
                except (OSError, TimeoutError):
                    failures += 1
                    return
                times.append((time.monotonic() - started) * 1000)
                replayed += len(seqs)
                deflated += sock.deflate is not None
                if seqs != expected:
                    wrong += 1
                await sock.close()

        began = time.monotonic()
        await asyncio.gather(*(one(t) for t in room.tokens))
        seconds = time.monotonic() - began
        result.update(
            {
                "seconds": round(seconds, 3),
                "failures": failures,
                "deflate_sockets": deflated,
                "clients_with_wrong_stream": wrong,
                "messages_replayed": replayed,
                "replayed_per_second": round(replayed / seconds) if seconds else None,
                "synced_p50_ms": _r(percentile(times, 0.5)),
                "synced_p99_ms": _r(percentile(times, 0.99)),
            }
        )

    try:
        asyncio.run(storm())
    finally:
        drop_room(room.room_id)
    return result


# --- join stampede ---------------------------------------------------------------------------------------
def join_stampede(base_url: str, *, users: int, seats: int, concurrency: int = 500) -> dict[str, Any]:
    """`users` non-members join one room of `seats` seats at once through POST /api/rooms/{id}/join; exact
    when successes = seats (or users) and personnel = active memberships = that number afterwards."""
    require_loopback(base_url)
    room = prepare_room(users, seats=seats, with_members=False)
    close_old_connections()
    path = f"/api/rooms/{room.room_id}/join"
    statuses: dict[str, int] = {}
    times: list[float] = []

    async def stampede() -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(token: str) -> None:
            async with gate:
                started = time.monotonic()
                try:
                    status, body = await http_json(
                        "POST", base_url.rstrip("/") + path, {}, {"Authorization": f"Bearer {token}"}
                    )
                    key = str(status) if status != 409 else f"409 {(body or {}).get('code')}"
                except (OSError, TimeoutError) as exc:
                    key = type(exc).__name__
                times.append((time.monotonic() - started) * 1000)
                statuses[key] = statuses.get(key, 0) + 1

        await asyncio.gather(*(one(t) for t in room.tokens))

    began = time.monotonic()
    asyncio.run(stampede())
    seconds = time.monotonic() - began
    saved = Room.objects.get(pk=room.room_id)
    active = Membership.objects.filter(room_id=room.room_id, is_active=True).count()
    joined = statuses.get("200", 0)
    expected = min(users, saved.max_personnel)
    result = {
        "via": "REST POST /api/rooms/{id}/join",
        "users": users,
        "seats": saved.max_personnel,
        "outcomes": statuses,
        "joined": joined,
        "personnel": saved.personnel,
        "active_memberships": active,
        "exact": joined == expected and saved.personnel == expected and active == expected,
        "seconds": round(seconds, 3),
        "joins_per_second": round(users / seconds, 1) if seconds else None,
        "p50_ms": _r(percentile(times, 0.5)),
        "p99_ms": _r(percentile(times, 0.99)),
    }
    drop_room(room.room_id)
    return result


# --- login storm -----------------------------------------------------------------------------------------
def login_storm(
    base_url: str,
    *,
    logins: int,
    members: int,
    senders: int,
    rate: float,
    duration: float,
    processes: int = 1,
    server_pids: list[int] | None = None,
    deflate: bool = True,
) -> dict[str, Any]:
    """`logins` users log in at once (POST /api/auth/login, real password hashing) while a room chats; the
    failures, the login latency and the live deliveries' p99 during the storm against before it."""
    require_loopback(base_url)
    usernames = [seeding.username_for(BENCH_USER_PREFIX, i) for i in range(1, logins + 1)]
    seeding.ensure_users(BENCH_USER_PREFIX, max(logins, members), BENCH_PASSWORD)
    login_stats: dict[str, Any] = {}

    def storm_in_thread() -> None:
        async def storm() -> None:
            await asyncio.sleep(duration / 3)
            statuses: dict[str, int] = {}
            times: list[float] = []
            login_stats["began"] = time.monotonic()

            async def one(name: str) -> None:
                started = time.monotonic()
                try:
                    status, _ = await http_json(
                        "POST", base_url.rstrip("/") + "/api/auth/login", {"username": name, "password": BENCH_PASSWORD}
                    )
                    key = str(status)
                except (OSError, TimeoutError) as exc:
                    key = type(exc).__name__
                times.append((time.monotonic() - started) * 1000)
                statuses[key] = statuses.get(key, 0) + 1

            await asyncio.gather(*(one(n) for n in usernames))
            login_stats.update(
                ended=time.monotonic(),
                statuses=statuses,
                p50_ms=_r(percentile(times, 0.5)),
                p99_ms=_r(percentile(times, 0.99)),
            )

        asyncio.run(storm())

    thread = threading.Thread(target=storm_in_thread, daemon=True)
    summary, reports = fanout(
        base_url,
        members=members,
        senders=senders,
        duration=duration,
        rate=rate,
        processes=processes,
        server_pids=server_pids,
        on_started=thread.start,
        keep_timeline=True,
        deflate=deflate,
    )
    thread.join(timeout=120)
    began, ended = login_stats.get("began", 0.0), login_stats.get("ended", 0.0)
    during = [ms for r in reports for at, ms in zip(r.timeline, r.delivery_ms, strict=False) if began <= at <= ended]
    before = [ms for r in reports for at, ms in zip(r.timeline, r.delivery_ms, strict=False) if at < began]
    ok = login_stats.get("statuses", {}).get("200", 0)
    return {
        "logins": logins,
        "login_ok": ok,
        "login_failures": logins - ok,
        "login_outcomes": login_stats.get("statuses"),
        "login_storm_seconds": round(ended - began, 3) if ended else None,
        "login_p50_ms": login_stats.get("p50_ms"),
        "login_p99_ms": login_stats.get("p99_ms"),
        "chat_delivery_p99_before_ms": _r(percentile(before, 0.99)),
        "chat_delivery_p99_during_ms": _r(percentile(during, 0.99)),
        "chat": summary,
    }


# --- login ramp ------------------------------------------------------------------------------------------
def login_ramp(
    base_url: str,
    *,
    users: int,
    ramp_seconds: float,
    lists_per_user: int = 3,
    server_pids: list[int] | None = None,
) -> dict[str, Any]:
    """The original chat's own load scenario: `users` start evenly spread over `ramp_seconds`; each logs in
    (real password hashing), creates a room, then lists rooms `lists_per_user` times. Failures per step
    (any status but 2xx, or no answer within 60 s) and the latencies: what a crowd arriving at once sees.
    The CPU of this client, of the server and of the whole machine is reported too: the client shares the
    machine's cores with the server, and a saturated client would be measuring itself."""
    require_loopback(base_url)
    base = base_url.rstrip("/")
    usernames = [seeding.username_for(BENCH_USER_PREFIX, i) for i in range(1, users + 1)]
    seeding.ensure_users(BENCH_USER_PREFIX, users, BENCH_PASSWORD)
    failures: dict[str, dict[str, int]] = {"login": {}, "create_room": {}, "list_rooms": {}}
    times: dict[str, list[float]] = {"login": [], "create_room": [], "list_rooms": []}

    async def step(name: str, method: str, url: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        started = time.monotonic()
        try:
            status, answer = await http_json(method, url, body, headers=headers, timeout=60.0)
        except (OSError, TimeoutError) as exc:
            status, answer = type(exc).__name__, None
        times[name].append((time.monotonic() - started) * 1000)
        if not (isinstance(status, int) and 200 <= status < 300):
            failures[name][str(status)] = failures[name].get(str(status), 0) + 1
            return None
        return answer

    async def one_user(index: int, name: str) -> None:
        await asyncio.sleep(ramp_seconds * index / max(1, users))
        login = await step("login", "POST", f"{base}/api/auth/login", {"username": name, "password": BENCH_PASSWORD})
        if not isinstance(login, dict) or "access" not in login:
            return
        token = login["access"]
        await step("create_room", "POST", f"{base}/api/rooms", {"title": f"ramp {name}", "max_personnel": 10}, token)
        for _ in range(lists_per_user):
            await step("list_rooms", "GET", f"{base}/api/rooms", token=token)

    async def crowd() -> float:
        started = time.monotonic()
        await asyncio.gather(*(one_user(i, name) for i, name in enumerate(usernames)))
        return time.monotonic() - started

    load_at_start = loadavg()
    pids = server_pids or []
    cpu_before, client_before = CpuSnapshot.take(pids), time.process_time()
    elapsed = asyncio.run(crowd())
    client_cpu = time.process_time() - client_before
    server_cpu, machine_cpu = CpuSnapshot.take(pids).since(cpu_before)
    Room.objects.filter(title__startswith="ramp ").delete()
    result: dict[str, Any] = {
        "users": users,
        "ramp_seconds": ramp_seconds,
        "seconds": round(elapsed, 1),
        "load_at_start": load_at_start,
        "client_cpu_seconds": round(client_cpu, 1),
        "server_cpu_seconds": round(server_cpu, 1) if pids else None,
        "machine_busy_cpu_seconds": round(machine_cpu, 1),
    }
    for name, spent in times.items():
        result[f"{name}_failures"] = sum(failures[name].values())
        result[f"{name}_outcomes"] = failures[name] or None
        for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            result[f"{name}_{label}_ms"] = _r(percentile(spent, q))
    return result


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
