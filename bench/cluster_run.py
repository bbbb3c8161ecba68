"""The cluster benchmark (issue 21): scripts/netcluster's three hosts x two processes against one process of
the same cluster, with the same clients, rooms and offered load, then a host cut off and a Redis failover
under that load.

One run:
1. `scripts/netcluster up` (unless told the cluster is already up) on this process's database, rate limits
   off; the cluster stops by itself if this process dies (NETCLUSTER_OWNER_PID).
2. Single process: fresh rooms (one big room plus many small ones), every member's socket on host 1's first
   process (no balancer), members in client worker processes inside the client namespace; warm-up, then a
   measured steady window: deliveries/s, p50/p99 send-to-delivery, that process's CPU per delivery.
3. Cluster: fresh rooms again, every socket through the balancer (leastconn over the six processes); the
   same steady window with the six processes' CPU summed; then the Redis primary killed (Sentinel promotes
   the replica) and, once that settled, host 2 cut off (held, healed), the load running throughout.
4. Stop sending, let every unacknowledged send be resent until acked, drain every member to its room's
   final last_seq (read from the database), and judge: every member must hold every seq of its room once,
   in order (cluster.judge); the database must hold every acked client_id once under a gapless seq.
5. `scripts/netcluster down`.

Members behave as real clients (cluster.ResumingMember): after_seq, `synced`, resume on every loss.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import Count, Max
from django.utils import timezone

from messaging.models import Message
from rooms.models import MAX_MAX_PERSONNEL, Membership, Room

from . import seeding
from .cluster import (
    ClusterSpec,
    RoomPart,
    Workers,
    first_ack_after,
    judge,
    recovery,
    sent_in_reached_all,
    window,
)
from .scenarios import BENCH_PASSWORD, BENCH_USER_PREFIX, tokens_for
from .servers import CpuSnapshot, loadavg, process_rss_bytes

NETCLUSTER = Path(settings.BASE_DIR) / "scripts" / "netcluster"
STATE = Path(os.environ.get("NETCLUSTER_STATE", Path(settings.BASE_DIR) / "var" / "netcluster"))


@dataclass
class Plan:
    big_members: int = 3000
    # 3,000 + 500 deliveries/s offered: what this 2-core machine carried with six processes and 5,000
    # client sockets on it too (at 16,000/s offered the machine, not the server, was the limit)
    big_senders: int = 2
    big_rate: float = 0.5  # messages/s per big-room sender
    rooms: int = 100
    room_members: int = 20
    room_rate: float = 0.25  # messages/s of each small room's one sender
    workers: int = 3
    warm: float = 5.0
    steady: float = 20.0
    cut_host: int = 2
    cut_hold: float = 60.0
    heal_hold: float = 10.0
    failover_hold: float = 30.0

    @property
    def users(self) -> int:
        return self.big_members + self.rooms * self.room_members

    @property
    def offered_messages_per_second(self) -> float:
        return self.big_senders * self.big_rate + self.rooms * self.room_rate

    @property
    def offered_deliveries_per_second(self) -> float:
        return self.big_senders * self.big_rate * self.big_members + self.rooms * self.room_rate * self.room_members


def netcluster(*args: str, env: dict[str, str] | None = None, timeout: float = 900.0) -> str:
    done = subprocess.run(
        [str(NETCLUSTER), *args], env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"netcluster {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def web_pids() -> dict[str, int]:
    """The web processes' pids by name (web-h1-8001, ...), from the cluster's pid files."""
    return {path.stem: int(path.read_text().strip()) for path in sorted(STATE.glob("web-*.pid"))}


def balancer_sessions(stats_url: str) -> dict[str, int]:
    """HAProxy's current sessions per web server."""
    with urllib.request.urlopen(stats_url + ";csv", timeout=5) as response:
        text = response.read().decode().lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return {
        row["svname"]: int(row["scur"] or 0) for row in rows if row["pxname"] == "web" and row["svname"] != "BACKEND"
    }


def services_snapshot(info: dict[str, Any] | None, pids: list[int]) -> dict[str, Any]:
    """What the shared services and the web processes did so far: the Redis primary's commands (asked of the
    sentinels), the database's transactions and rows (pg_stat_database), the web processes' resident memory."""
    snapshot: dict[str, Any] = {"at": time.monotonic(), "rss": {pid: process_rss_bytes(pid) for pid in pids}}
    if info is not None:
        try:
            host, port = info["redis_sentinels"][0].rsplit(":", 1)
            sentinel = redis.Redis(host=host, port=int(port), socket_timeout=3)
            primary = sentinel.execute_command("SENTINEL", "get-master-addr-by-name", info["redis_master_name"])
            address = [p.decode() if isinstance(p, bytes) else p for p in primary]
            stats = redis.Redis(host=address[0], port=int(address[1]), socket_timeout=3).info("stats")
            snapshot["redis_commands"] = int(stats["total_commands_processed"])
        except (redis.RedisError, OSError, KeyError, IndexError, ValueError):
            pass
    if connection.vendor != "postgresql":
        return snapshot
    close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = %s",
            [settings.DATABASES["default"]["NAME"]],
        )
        row = cursor.fetchone()
    if row is not None:
        snapshot["pg"] = [int(v) for v in row]
    return snapshot


def services_rates(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    seconds = after["at"] - before["at"]
    rates: dict[str, Any] = {"seconds": round(seconds, 2)}
    if "redis_commands" in before and "redis_commands" in after:
        rates["redis_commands_per_second"] = round((after["redis_commands"] - before["redis_commands"]) / seconds, 1)
    if "pg" in before and "pg" in after:
        names = ("pg_transactions", "pg_rows_inserted", "pg_rows_updated", "pg_rows_deleted")
        for name, b, a in zip(names, before["pg"], after["pg"], strict=True):
            rates[f"{name}_per_second"] = round((a - b) / seconds, 1)
    rates["web_rss_mib"] = {str(pid): round(rss / 2**20, 1) for pid, rss in after["rss"].items()}
    return rates


# --- rows ----------------------------------------------------------------------------------------------
def seed(plan: Plan, tokens: list[str], user_ids: list[int], label: str) -> list[tuple[int, list[str]]]:
    """Fresh rooms: one of big_members, then `rooms` of room_members, each member in one room; returns
    (room id, member tokens) in that order."""
    now = timezone.now()
    layout = [(0, plan.big_members)] + [
        (plan.big_members + i * plan.room_members, plan.room_members) for i in range(plan.rooms)
    ]
    rooms = []
    for first, count in layout:
        room = Room.objects.create(
            title=f"cluster bench {label} {count} {now:%H:%M:%S}",
            owner_id=user_ids[first],
            max_personnel=max(2, min(MAX_MAX_PERSONNEL, count)),
        )
        Membership.objects.bulk_create(
            [
                Membership(room_id=room.pk, user_id=uid, is_active=True, joined_at=now)
                for uid in user_ids[first : first + count]
            ],
            batch_size=2000,
        )
        rooms.append((room.pk, tokens[first : first + count]))
    seeding.recount_personnel([room_id for room_id, _ in rooms])
    return rooms


def split(plan: Plan, rooms: list[tuple[int, list[str]]], ws_base: str, namespace: str | None) -> list[ClusterSpec]:
    """Deal every room's members round-robin over the workers, starting at a different worker for each room;
    a room's senders are its first members, so that the senders spread over the workers too."""
    workers = max(1, plan.workers)
    specs = [ClusterSpec(worker=w, ws_base=ws_base, rooms=[], namespace=namespace) for w in range(workers)]
    for index, (room_id, room_tokens) in enumerate(rooms):
        senders, rate = (
            (plan.big_senders, plan.big_rate) if index == 0 else (1 if plan.room_rate > 0 else 0, plan.room_rate)
        )
        for w, spec in enumerate(specs):
            mine = [k for k in range(len(room_tokens)) if (k + index) % workers == w]
            if mine:
                spec.rooms.append(
                    RoomPart(room_id, [room_tokens[k] for k in mine], sum(1 for k in mine if k < senders), rate)
                )
    return specs


def room_state(room_ids: list[int]) -> dict[int, dict[str, int]]:
    close_old_connections()
    rows = (
        Message.objects.filter(room_id__in=room_ids)
        .values("room_id")
        .annotate(n=Count("id"), ids=Count("client_id", distinct=True), top=Max("seq"))
    )
    last = dict(Room.objects.filter(pk__in=room_ids).values_list("pk", "last_seq"))
    state = {
        room_id: {"last_seq": last.get(room_id, 0), "messages": 0, "client_ids": 0, "max_seq": 0}
        for room_id in room_ids
    }
    for row in rows:
        state[row["room_id"]].update(messages=row["n"], client_ids=row["ids"], max_seq=row["top"] or 0)
    return state


# --- one phase -----------------------------------------------------------------------------------------
def run_phase(
    label: str,
    plan: Plan,
    ws_base: str,
    pids: list[int],
    tokens: list[str],
    user_ids: list[int],
    namespace: str | None,
    failures: list[tuple[str, Callable[[], Any], float]],
    stats_url: str | None,
    log: Callable[[str], None],
    dump_dir: Path | None = None,
    services: dict[str, Any] | None = None,
) -> dict[str, Any]:
    rooms = seed(plan, tokens, user_ids, label)
    room_ids = [room_id for room_id, _ in rooms]
    close_old_connections()
    specs = split(plan, rooms, ws_base, namespace)
    workers = Workers(specs)
    result: dict[str, Any] = {"phase": label, "target": ws_base, "server_processes": len(pids)}
    try:
        connect_started = time.monotonic()
        synced = workers.start()
        result["members_synced_at_start"] = synced
        result["connect_seconds"] = round(time.monotonic() - connect_started, 1)
        log(f"{label}: {synced} of {plan.users} members synced in {result['connect_seconds']} s")
        if stats_url:
            result["sockets_per_server"] = balancer_sessions(stats_url)
        result["loadavg_at_start"] = loadavg()
        workers.go()
        time.sleep(plan.warm)
        services0 = services_snapshot(services, pids)
        cpu0, t0 = CpuSnapshot.take(pids), time.monotonic()
        time.sleep(plan.steady)
        cpu1, t1 = CpuSnapshot.take(pids), time.monotonic()
        result["services_steady"] = services_rates(services0, services_snapshot(services, pids))
        result["loadavg_after_steady"] = loadavg()
        events = []
        for name, action, hold in failures:
            at = time.monotonic()
            log(f"{label}: {name}")
            output = action()
            returned = time.monotonic()
            events.append({"event": name, "at": at, "returned_after_s": round(returned - at, 3), "output": output})
            time.sleep(hold)
        stopped = time.monotonic()
        log(f"{label}: stop sending, resend until acked, drain")

        drain_targets: dict[int, int] = {}

        def targets() -> dict[int, int]:
            time.sleep(2.0)  # sends still in flight when the workers gave up on them commit first
            drain_targets.update({room_id: s["last_seq"] for room_id, s in room_state(room_ids).items()})
            return drain_targets

        workers.stop(targets)
        reports = workers.close()
    except BaseException:
        workers.kill()
        raise
    if dump_dir is not None:
        with (dump_dir / f"cluster_bench_{label}_members.pickle").open("wb") as out:
            pickle.dump({"members": [m for r in reports for m in r.members], "t0": t0}, out)
    delivered_at = [v for r in reports for v in r.delivered_at]
    delivery_ms = [v for r in reports for v in r.delivery_ms]
    replayed_at = [v for r in reports for v in r.replayed_at]
    replayed_ms = [v for r in reports for v in r.replayed_ms]
    acked_at = [a[3] for r in reports for a in r.acked]
    members = [m for r in reports for m in r.members]
    steady = window(delivered_at, delivery_ms, t0, t1)
    server_cpu, machine_cpu = cpu1.since(cpu0)
    steady["server_cpu_seconds"] = round(server_cpu, 3)
    steady["server_cpu_us_per_delivery"] = (
        round(server_cpu / steady["deliveries"] * 1e6, 1) if steady["deliveries"] else None
    )
    steady["server_cpu_cores"] = round(server_cpu / (t1 - t0), 2)
    steady["machine_cpu_cores"] = round(machine_cpu / (t1 - t0), 2)
    steady["per_process_cpu_cores"] = {
        str(pid): round((cpu1.per_pid[pid] - cpu0.per_pid[pid]) / (t1 - t0), 2) for pid in pids
    }
    result["steady"] = steady
    ends = [e["at"] for e in events[1:]] + ([stopped] if events else [])
    for event, until in zip(events, ends, strict=True):
        at = event["at"]
        event.update(recovery(members, at, until))
        event["first_ack_after_s"] = first_ack_after(acked_at, at)
        event["sent_in_first_second_reached_all_s"] = sent_in_reached_all(
            delivered_at + replayed_at, delivery_ms + replayed_ms, at
        )
        event["live_window_after"] = window(delivered_at, delivery_ms, at, until)
        event["replayed_after"] = window(replayed_at, replayed_ms, at, until)
        event["live_p99_by_5s"] = [
            window(delivered_at, delivery_ms, start, min(until, start + 5.0))["p99_ms"]
            for start in [at + 5.0 * i for i in range(int((until - at) // 5.0))]
        ]
        event["at"] = round(at - t0, 3)  # seconds after the steady window began
    result["events"] = events
    state = room_state(room_ids)
    last_seq = {room_id: s["last_seq"] for room_id, s in state.items()}
    result["judge"] = judge(members, last_seq, drain_targets)
    acked_ids = {(room, cid) for r in reports for room, cid, _seq, _at in r.acked}
    result["stored"] = {
        "messages": sum(s["messages"] for s in state.values()),
        "acked_client_ids": len(acked_ids),
        "client_ids_stored_twice": sum(s["messages"] - s["client_ids"] for s in state.values()),
        "rooms_with_seq_gaps": sum(1 for s in state.values() if s["max_seq"] != s["messages"]),
    }
    result["sent"] = sum(r.sent for r in reports)
    result["resends"] = sum(r.resends for r in reports)
    result["unacked_at_end"] = sum(r.unacked_at_end for r in reports)
    result["drain_timed_out"] = any(r.drain_timed_out for r in reports)
    errors: dict[str, int] = {}
    for r in reports:
        for code, n in r.errors.items():
            errors[code] = errors.get(code, 0) + n
    result["errors"] = errors
    result["client_cpu_seconds"] = round(sum(r.client_cpu_seconds for r in reports), 1)
    return result


def run(
    plan: Plan,
    *,
    start_cluster: bool = True,
    single: bool = True,
    failures: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    database = settings.DATABASES["default"]["NAME"]
    env = {
        "NETCLUSTER_DB": str(database),
        "NETCLUSTER_OWNER_PID": str(os.getpid()),
        "NETCLUSTER_TTL": "1800",
        "RATE_LIMITS": "off",
        "DEBUG": "0",
        "SECRET_KEY": settings.SECRET_KEY,  # the bench mints the members' tokens with this process's key
    }
    result: dict[str, Any] = {
        "scenario": "cluster",
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "cores": os.cpu_count(),
        "plan": {
            **plan.__dict__,
            "offered_messages_per_second": plan.offered_messages_per_second,
            "offered_deliveries_per_second": plan.offered_deliveries_per_second,
        },
    }
    started_here = False
    try:
        if start_cluster:
            log("netcluster up")
            result["loadavg_before_up"] = loadavg()
            info = json.loads(netcluster("up", env=env).strip().splitlines()[-1])
            started_here = True
        else:
            info = json.loads(netcluster("status").strip().splitlines()[-1])
        pids = web_pids()
        user_ids, _ = seeding.ensure_users(BENCH_USER_PREFIX, plan.users, BENCH_PASSWORD)
        tokens = tokens_for(user_ids)
        namespace = info.get("client_namespace")
        ws = lambda url: url.replace("http://", "ws://", 1)  # noqa: E731
        if single:
            first = info["hosts"][0]["servers"][0]
            name = "web-h1-" + first.rsplit(":", 1)[1]
            result["single"] = run_phase(
                "single", plan, ws(first), [pids[name]], tokens, user_ids, namespace, [], None, log, STATE.parent, info
            )
            log(json.dumps(result["single"]["steady"]))
        steps: list[tuple[str, Callable[[], Any], float]] = []
        if failures:
            host = plan.cut_host
            steps = [
                (
                    "failover redis",
                    lambda: json.loads(netcluster("failover", "redis").strip() or "{}"),
                    plan.failover_hold,
                ),
                (f"cut host {host}", lambda: netcluster("cut", str(host)), plan.cut_hold),
                (f"heal host {host}", lambda: netcluster("heal", str(host)), plan.heal_hold),
            ]
        result["cluster"] = run_phase(
            "cluster",
            plan,
            ws(info["balancer"]),
            list(pids.values()),
            tokens,
            user_ids,
            namespace,
            steps,
            info.get("stats"),
            log,
            STATE.parent,
            info,
        )
        log(json.dumps(result["cluster"]["steady"]))
    finally:
        if started_here:
            log("netcluster down")
            netcluster("down")
    if single and result.get("single", {}).get("steady", {}).get("deliveries"):
        s, c = result["single"]["steady"], result["cluster"]["steady"]
        result["cluster_vs_single"] = {
            "deliveries_per_second": _ratio(c["deliveries_per_second"], s["deliveries_per_second"]),
            "p99_ms": _ratio(c["p99_ms"], s["p99_ms"]),
            "server_cpu_us_per_delivery": _ratio(c["server_cpu_us_per_delivery"], s["server_cpu_us_per_delivery"]),
        }
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None
