"""The test cluster (scripts/netcluster): three hosts in network namespaces, two processes each, behind
HAProxy, with PostgreSQL through PgBouncer (transaction mode), Redis with Sentinel, Kafka and MongoDB. Each
test breaks one part mid-chat and counts: every send stored once with a gapless seq, every member saw every
TALK message once in seq order across its reconnects (faults_support.assert_nothing_lost_nothing_duplicated).

Marked `cluster`: needs root (ip netns) and runs only when asked for (`-m cluster`), a separate step of
scripts/test. One cluster serves the module, against the test database; each test seeds its own room.
Each test writes what it saw to var/faults/cluster_<name>.json (the figures in docs/SCALING.md).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets
from django.db import connection

from accounts.models import User
from accounts.services import issue_tokens
from accounts.testing import access_token_for
from core.testing import BASE_DIR, wait_until

from .faults_support import Member, assert_nothing_lost_nothing_duplicated, send_stream, stored_history
from .test_faults import (
    make_room_with_members,
    orm_history,
    orm_last_seq,
    start_members,
    summarize,
    wait_all_caught_up,
    write_report,
)

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

NETCLUSTER = BASE_DIR / "scripts" / "netcluster"
PRESENCE_TIMEOUT_SECONDS = 8
LOGIN_USERNAME_LIMIT = 10  # per day: no window boundary falls inside a test run in practice
CLUSTER_ENV = {
    "TESTING": "1",
    "PRESENCE_TIMEOUT_SECONDS": str(PRESENCE_TIMEOUT_SECONDS),
    "PRESENCE_HEARTBEAT_SECONDS": "2",
    "THROTTLE_LOGIN_USERNAME": f"{LOGIN_USERNAME_LIMIT}/day",
    "THROTTLE_LOGIN_IP": "100000/day",
}


@dataclass(frozen=True)
class Endpoint:
    """What faults_support.Member needs of a server: where to open sockets (here: the balancer, or one host)."""

    http_url: str

    @property
    def ws_url(self) -> str:
        return "ws" + self.http_url[len("http") :]


def netcluster(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    result = subprocess.run(
        [str(NETCLUSTER), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"netcluster {' '.join(args)} failed: {result.stderr[-2000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def cluster(django_db_setup: None, django_db_blocker: Any) -> Iterator[dict[str, Any]]:
    """One cluster for the module, on the test database; stops with the module (and by itself if this
    process dies: NETCLUSTER_OWNER_PID)."""
    with django_db_blocker.unblock():
        database = connection.settings_dict["NAME"]
    env = {
        **CLUSTER_ENV,
        "NETCLUSTER_DB": database,
        "NETCLUSTER_OWNER_PID": str(os.getpid()),
        "NETCLUSTER_TTL": "3600",
        "CHANNEL_LAYER_PREFIX": f"nc{os.getpid()}",
    }
    info = json.loads(netcluster("up", env=env).strip().splitlines()[-1])
    try:
        yield info
    finally:
        netcluster("down")


def balancer_stats(cluster: dict[str, Any]) -> dict[str, dict[str, str]]:
    """HAProxy's view of each web server: status, current sessions."""
    with urllib.request.urlopen(cluster["stats"] + ";csv", timeout=5) as response:
        text = response.read().decode().lstrip("# ")
    return {row["svname"]: row for row in csv.DictReader(io.StringIO(text)) if row["pxname"] == "web"}


def all_servers_up(cluster: dict[str, Any]) -> bool:
    return all(row["status"] == "UP" for name, row in balancer_stats(cluster).items() if name != "BACKEND")


async def api(cluster: dict[str, Any], method: str, path: str, token: str = "", body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
        response = await http.request(method, cluster["balancer"] + path, json=body, headers=headers)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def balancer_members(room_id: int, users: list[User], balancer: Endpoint) -> list[Member]:
    return [
        Member(f"m{n}", room_id, access_token_for(user), [balancer], first_server=0, after_seq=0)
        for n, user in enumerate(users)
    ]


# --- 1. an application host cut off -------------------------------------------------------------------------------
def test_a_host_cut_off_mid_chat_its_clients_resume_through_the_balancer_and_its_presence_expires(cluster):
    balancer = Endpoint(cluster["balancer"])
    cut_host = cluster["hosts"][1]  # h2
    room, users = make_room_with_members(13, "host cut")
    members = balancer_members(room.pk, users[:12], balancer)
    ghost_user = users[12]
    senders = members[:3]
    report: dict[str, Any] = {}

    async def connected(user_id: int) -> bool:
        status, body = await api(cluster, "GET", f"/api/rooms/{room.pk}/members", access_token_for(users[0]))
        assert status == 200, body
        return next(row["connected"] for row in body["results"] if row["user"]["id"] == user_id)

    async def scenario() -> None:
        await start_members(members)
        # A client of the cut host that never comes back: its presence must expire by itself.
        ghost_url = Endpoint(cut_host["servers"][0]).ws_url
        ghost = await websockets.connect(
            f"{ghost_url}/ws/rooms/{room.pk}/?access_token={access_token_for(ghost_user)}", open_timeout=10
        )
        await wait_for_async(lambda: connected(ghost_user.pk), 20, "the ghost's presence")
        stats = balancer_stats(cluster)
        on_cut_host = sum(int(stats[f"{cut_host['name']}-{port}"]["scur"]) for port in (8001, 8002))
        assert on_cut_host >= 1, "leastconn placed no member on the host to cut"
        stop_sending = False
        streams = [
            asyncio.ensure_future(
                send_stream(s, 10_000, 0.05, f"{s.name}-{uuid.uuid4().hex[:4]}", until=lambda: stop_sending)
            )
            for s in senders
        ]
        await senders[0].wait_for(lambda: sum(len(s.acks) for s in senders) >= 30, 60, "acks before the cut")
        await asyncio.to_thread(netcluster, "cut", cut_host["name"][1:])
        cut_at = time.monotonic()
        try:
            await members[0].wait_for(
                lambda: sum(1 for m in members if m.stats.reconnects and m.connection_number >= 2) >= on_cut_host,
                90,
                "the cut host's clients resumed elsewhere",
            )
            resynced_at = time.monotonic()
            acks_at_resync = sum(len(s.acks) for s in senders)
            await senders[0].wait_for(
                lambda: sum(len(s.acks) for s in senders) >= acks_at_resync + 30, 60, "acks after the cut"
            )
            stop_sending = True
            sent = await asyncio.gather(*streams)
            caught_up = await wait_all_caught_up(members, orm_last_seq(room.pk), timeout=60)
            await wait_for_async(
                lambda: not_(connected(ghost_user.pk)), PRESENCE_TIMEOUT_SECONDS + 30, "the ghost's presence gone"
            )
            ghost_gone_at = time.monotonic()
            still_connected = [await connected(user.pk) for user in users[:12]]
            report.update(
                sent_ids={cid for ids in sent for cid in ids},
                clients_on_cut_host=on_cut_host,
                clients_that_reconnected=sum(1 for m in members if m.stats.reconnects),
                seconds_from_cut_to_last_client_resynced=round(resynced_at - cut_at, 3),
                seconds_from_cut_to_ghost_presence_gone=round(ghost_gone_at - cut_at, 3),
                caught_up_after_last_ack_seconds=round(caught_up, 3),
                members_still_connected=sum(still_connected),
            )
        finally:
            await asyncio.to_thread(netcluster, "heal", cut_host["name"][1:])
            ghost.transport.abort()
            for member in members:
                await member.stop()

    asyncio.run(scenario())
    wait_until(lambda: all_servers_up(cluster), 60, what="the healed host back in the balancer")
    stored = stored_history(orm_history(room.pk))
    assert_nothing_lost_nothing_duplicated(members, stored, report["sent_ids"], 0)
    assert report["clients_that_reconnected"] == report["clients_on_cut_host"]
    assert report["members_still_connected"] == 12
    write_report(
        "cluster_host_cut",
        {"messages_sent": len(report.pop("sent_ids")), "messages_stored": len(stored), **report, **summarize(members)},
    )


async def not_(awaitable: Any) -> bool:
    return not await awaitable


async def wait_for_async(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.25)


# --- 2. the Redis primary killed ------------------------------------------------------------------------------
def test_the_redis_primary_killed_sentinel_promotes_the_replica_and_chat_denylist_and_rate_limits_follow(cluster):
    balancer = Endpoint(cluster["balancer"])
    room, users = make_room_with_members(20, "redis failover")
    members = balancer_members(room.pk, users, balancer)
    senders = members[:4]
    leaving = User.objects.create_user(username=f"leave{uuid.uuid4().hex[:6]}", password="pw-Secret-123")
    victim = f"victim{uuid.uuid4().hex[:6]}"
    User.objects.create_user(username=victim, password="pw-Secret-123")
    pair = issue_tokens(leaving)
    report: dict[str, Any] = {}

    async def failed_login() -> int:
        status, _ = await api(cluster, "POST", "/api/auth/login", body={"username": victim, "password": "wrong"})
        return status

    async def scenario() -> None:
        await start_members(members)
        # A logout just before the failover: its denylist entry must be on the replica that takes over.
        assert (await api(cluster, "GET", "/api/auth/me", pair.access))[0] == 200
        status, body = await api(cluster, "POST", "/api/auth/logout", pair.access, {"refresh": pair.refresh})
        assert status == 204, body
        # Failed logins counted before the failover must still count after it.
        before = [await failed_login() for _ in range(LOGIN_USERNAME_LIMIT - 4)]
        assert 429 not in before and len(set(before)) == 1, before
        stop_sending = False
        streams = [
            asyncio.ensure_future(
                send_stream(s, 10_000, 0.05, f"{s.name}-{uuid.uuid4().hex[:4]}", until=lambda: stop_sending)
            )
            for s in senders
        ]
        await senders[0].wait_for(lambda: sum(len(s.acks) for s in senders) >= 40, 60, "acks before")
        failover = json.loads(await asyncio.to_thread(netcluster, "failover", "redis"))
        killed_at = time.monotonic()
        acks_at_promotion = sum(len(s.acks) for s in senders)
        await senders[0].wait_for(
            lambda: sum(len(s.acks) for s in senders) >= acks_at_promotion + 40, 90, "acks after the failover"
        )
        chat_resumed_at = time.monotonic()
        stop_sending = True
        sent = await asyncio.gather(*streams)
        caught_up = await wait_all_caught_up(members, orm_last_seq(room.pk), timeout=60)
        all_synced_at = time.monotonic()
        # The denylist answers again (not 503) and still refuses the logged-out token.
        me_status = 503
        deadline = time.monotonic() + 60
        while me_status in (502, 503) and time.monotonic() < deadline:
            me_status = (await api(cluster, "GET", "/api/auth/me", pair.access))[0]
            await asyncio.sleep(0.2)
        after = [await failed_login() for _ in range(4)]
        over_limit = await failed_login()
        report.update(
            sent_ids={cid for ids in sent for cid in ids},
            failover=failover,
            seconds_from_kill_to_chat_resumed=round(chat_resumed_at - killed_at, 3),
            seconds_from_kill_to_all_caught_up=round(all_synced_at - killed_at, 3),
            caught_up_after_last_ack_seconds=round(caught_up, 3),
            logged_out_token_after_failover=me_status,
            failed_logins_after_failover=after,
            login_over_the_limit=over_limit,
        )
        for member in members:
            await member.stop()

    asyncio.run(scenario())
    stored = stored_history(orm_history(room.pk))
    assert_nothing_lost_nothing_duplicated(members, stored, report["sent_ids"], 0)
    assert report["failover"]["old"] != report["failover"]["new"]
    assert report["logged_out_token_after_failover"] == 401
    assert 429 not in report["failed_logins_after_failover"], report["failed_logins_after_failover"]
    assert report["login_over_the_limit"] == 429
    write_report(
        "cluster_redis_failover",
        {"messages_sent": len(report.pop("sent_ids")), "messages_stored": len(stored), **report, **summarize(members)},
    )


# --- 3. PgBouncer restarted -----------------------------------------------------------------------------------
def test_pgbouncer_restarted_mid_chat_loses_and_duplicates_nothing(cluster):
    balancer = Endpoint(cluster["balancer"])
    room, users = make_room_with_members(12, "pgbouncer restart")
    members = balancer_members(room.pk, users, balancer)
    senders = members[:3]
    report: dict[str, Any] = {}

    async def scenario() -> None:
        await start_members(members)
        stop_sending = False
        streams = [
            asyncio.ensure_future(
                send_stream(s, 10_000, 0.05, f"{s.name}-{uuid.uuid4().hex[:4]}", until=lambda: stop_sending)
            )
            for s in senders
        ]
        await senders[0].wait_for(lambda: sum(len(s.acks) for s in senders) >= 30, 60, "acks before")
        await asyncio.to_thread(netcluster, "restart", "pgbouncer")
        restarted_at = time.monotonic()
        acks_at_restart = sum(len(s.acks) for s in senders)
        await senders[0].wait_for(
            lambda: sum(len(s.acks) for s in senders) >= acks_at_restart + 30, 60, "acks after the restart"
        )
        resumed_at = time.monotonic()
        stop_sending = True
        sent = await asyncio.gather(*streams)
        caught_up = await wait_all_caught_up(members, orm_last_seq(room.pk), timeout=60)
        report.update(
            sent_ids={cid for ids in sent for cid in ids},
            seconds_from_restart_to_30_more_acks=round(resumed_at - restarted_at, 3),
            caught_up_after_last_ack_seconds=round(caught_up, 3),
        )
        for member in members:
            await member.stop()

    asyncio.run(scenario())
    stored = stored_history(orm_history(room.pk))
    assert_nothing_lost_nothing_duplicated(members, stored, report["sent_ids"], 0)
    write_report(
        "cluster_pgbouncer_restart",
        {"messages_sent": len(report.pop("sent_ids")), "messages_stored": len(stored), **report, **summarize(members)},
    )
