"""Fault tests on real processes and real services: a worker killed, Redis, PostgreSQL, Kafka and MongoDB going
away mid-stream. Each ends with "nothing lost, nothing duplicated": every send stored once with a gapless seq,
and every member saw every TALK message once, in seq order, across its reconnects.

Each test writes what it saw (messages, reconnects, times to recover) to var/faults/<name>.json; the figures in
docs/RELIABILITY.md come from there. The full-minute Kafka outage is marked `soak` (deselected by default).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from statistics import median
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.models import User
from accounts.testing import access_token_for
from core.testing import BASE_DIR, ServerProcess, own_redis, port_answers, wait_until
from core.testing import test_database_url as current_database_url
from events.consumer import consume_events
from events.models import OutboxEvent
from events.testing import RelayProcess, TansuBroker
from messaging.models import Message
from presence.testing import PresenceClient
from rooms.models import Room
from rooms.services import create_room, join_room

from .faults_support import (
    Member,
    OwnPostgres,
    assert_nothing_lost_nothing_duplicated,
    own_mongo,
    readyz,
    send_stream,
    stored_history,
)

pytestmark = pytest.mark.django_db(transaction=True)

REPORT_DIR = BASE_DIR / "var" / "faults"
NO_LIMITS = {"RATE_LIMITS": "off"}


# --- fixtures and helpers -------------------------------------------------------------------------------------
@pytest.fixture
def cluster(transactional_db: None) -> Iterator[Callable[..., list[ServerProcess]]]:
    """cluster(n, env) -> n server processes started side by side (as scripts/cluster does); all stopped after."""
    started: list[ServerProcess] = []

    def start(count: int, env: dict[str, str] | None = None, name: str = "fault") -> list[ServerProcess]:
        servers = [ServerProcess(env={**NO_LIMITS, **(env or {})}, name=f"{name}{i}") for i in range(count)]
        started.extend(servers)
        errors: list[BaseException] = []

        def run(server: ServerProcess) -> None:
            try:
                server.start(timeout=60)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(s,)) for s in servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return servers

    yield start
    for server in started:
        server.stop()


def make_room_with_members(count: int, title: str) -> tuple[Room, list[User]]:
    tag = uuid.uuid4().hex[:6]
    users = [
        User.objects.create_user(username=f"f{tag}{n}", password="pw-Secret-123", nickname=f"F{n}")
        for n in range(count)
    ]
    room = create_room(owner=users[0], title=title, max_personnel=max(2, count))
    for user in users[1:]:
        join_room(room_id=room.pk, user=user)
    room.refresh_from_db()
    return room, users


def members_for(room: Room, users: Sequence[User], servers: Sequence[ServerProcess]) -> list[Member]:
    return [
        Member(f"m{n}", room.pk, access_token_for(user), servers, first_server=n, after_seq=room.last_seq)
        for n, user in enumerate(users)
    ]


async def start_members(members: Sequence[Member]) -> None:
    for member in members:
        member.start()
    await asyncio.gather(*(m.wait_synced() for m in members))


async def wait_all_caught_up(members: Sequence[Member], last_seq: Callable[[], int], timeout: float) -> float:
    """Wait until every member has seen the room's last seq; returns how long that took."""
    started = time.monotonic()
    target = await asyncio.to_thread(last_seq)
    await asyncio.gather(*(m.wait_for(lambda m=m: m.last_seq >= target, timeout, f"seq {target}") for m in members))
    return time.monotonic() - started


def orm_last_seq(room_id: int) -> Callable[[], int]:
    def read() -> int:
        try:
            return int(Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).get())
        finally:
            connection.close()  # a worker thread's connection would outlive the test database

    return read


def orm_history(room_id: int) -> list[tuple[int, str, str]]:
    return list(Message.objects.filter(room_id=room_id).order_by("seq").values_list("seq", "kind", "client_id"))


def summarize(members: Sequence[Member]) -> dict[str, Any]:
    recover = [s for m in members for s in m.stats.recover_seconds]
    return {
        "members": len(members),
        "sockets_opened": sum(m.stats.sockets for m in members),
        "reconnects": sum(m.stats.reconnects for m in members),
        "failed_connect_attempts": sum(m.stats.failed_connects for m in members),
        "resends": sum(m.stats.resends for m in members),
        "unavailable_error_frames": sum(m.stats.unavailable_errors for m in members),
        "recover_seconds_median": round(median(recover), 3) if recover else None,
        "recover_seconds_max": round(max(recover), 3) if recover else None,
        "longest_wait_for_an_ack_or_error_seconds": round(
            max((a for m in members for a in m.answer_seconds), default=0), 3
        ),
        "deliveries": sum(len(m.received) for m in members),
    }


def write_report(name: str, report: dict[str, Any]) -> None:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    report = {"test": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **report}
    (REPORT_DIR / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


# --- the run configuration --------------------------------------------------------------------------------------
def consecutive_free_ports(count: int) -> int:
    """A run of ports that bind now, below the ephemeral range (where outgoing connections take ports)."""
    for _attempt in range(100):
        first = random.randint(20000, 30000)
        sockets = []
        try:
            for n in range(count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", first + n))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no run of free ports")


def test_scripts_cluster_runs_n_workers_and_the_relay_and_stops_them_all_on_sigterm(transactional_db, tmp_path):
    first = consecutive_free_ports(2)
    pid_file = tmp_path / "cluster.pids"
    env = {
        **os.environ,
        "DATABASE_URL": current_database_url(),
        "TESTING": "1",
        "PID_FILE": str(pid_file),
        "LOG_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        [str(BASE_DIR / "scripts" / "cluster"), "2", str(first)],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        for port in (first, first + 1):
            wait_until(lambda port=port: healthz_ok(port), 60, 0.2, f"worker on {port}")
        lines = [line.split() for line in pid_file.read_text().splitlines()]
        web = [(int(port), int(pid)) for kind, port, pid in lines if kind == "web"]
        relays = [int(pid) for kind, _port, pid in lines if kind == "relay"]
        assert [port for port, _pid in web] == [first, first + 1]
        assert len(relays) == (1 if settings.KAFKA_BOOTSTRAP_SERVERS else 0)
        pids = [pid for _port, pid in web] + relays
        assert all(pid_alive(pid) for pid in pids)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
        assert process.returncode == 0, output
        assert not any(pid_alive(pid) for pid in pids), output
        assert not pid_file.exists()
        assert not any(port_answers("127.0.0.1", port) for port, _pid in web)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def healthz_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- 1. a worker killed mid-stream ------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.redis
def test_a_worker_killed_mid_stream_loses_and_duplicates_nothing_for_100_members(cluster):
    room, users = make_room_with_members(100, "sigkill")
    servers = cluster(3, name="kill")
    doomed = servers[0]
    members = members_for(room, users, servers)
    senders = members[:5]  # on servers 0, 1, 2, 0, 1: two of them lose their socket mid-send
    per_sender = 40
    report: dict[str, Any] = {}

    async def scenario() -> None:
        await start_members(members)
        streams = [
            asyncio.ensure_future(send_stream(s, per_sender, 0.03, f"{s.name}-{uuid.uuid4().hex[:4]}")) for s in senders
        ]
        # Kill once about a third of the messages are acknowledged: sends are in flight on the doomed worker.
        await senders[0].wait_for(lambda: sum(len(s.acks) for s in senders) >= per_sender * 5 // 3, 30, "acks")
        on_doomed = sum(1 for m in members if m.server is doomed and m.ws is not None)
        kill_time = timezone.now()
        doomed.kill()
        killed_at = time.monotonic()
        sent = await asyncio.gather(*streams)
        caught_up = await wait_all_caught_up(members, orm_last_seq(room.pk), timeout=30)
        report.update(
            sent_ids={cid for ids in sent for cid in ids},
            members_on_killed_worker=on_doomed,
            seconds_from_kill_to_all_caught_up=round(time.monotonic() - killed_at, 3),
            caught_up_after_last_ack_seconds=round(caught_up, 3),
            kill_time=kill_time,
        )
        for member in members:
            await member.stop()

    asyncio.run(scenario())
    stored = stored_history(orm_history(room.pk))
    assert_nothing_lost_nothing_duplicated(members, stored, report["sent_ids"], room.last_seq)
    assert report["members_on_killed_worker"] >= 30
    # A resend either found the message committed before the kill (only the ack was lost) or stored it first.
    resent = {cid for s in senders for cid in s.resent}
    committed_before = Message.objects.filter(
        room=room, client_id__in=resent, created_at__lt=report.pop("kill_time")
    ).count()
    report.update(
        resends_whose_first_send_was_committed=committed_before,
        resends_stored_by_the_resend=len(resent) - committed_before,
    )
    summary = summarize(members)
    assert summary["reconnects"] >= report["members_on_killed_worker"]
    write_report(
        "worker_sigkill",
        {
            "servers": 3,
            "messages_sent": len(report.pop("sent_ids")),
            "messages_stored": len(stored),
            **report,
            **summary,
        },
    )


# --- 2. Redis restarted mid-stream ------------------------------------------------------------------------------
@pytest.mark.postgres
def test_redis_restarted_mid_stream_loses_and_duplicates_nothing(cluster):
    redis = own_redis().start()
    try:
        env = {"REDIS_URL": f"redis://127.0.0.1:{redis.port}/0", "CHANNEL_LAYER_PREFIX": "fault"}
        room, users = make_room_with_members(30, "redis restart")
        servers = cluster(2, env=env, name="redis")
        members = members_for(room, users, servers)
        senders = members[:4]  # two on each server: every publish crosses processes through Redis
        hopper = members[-1]
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
            await senders[0].wait_for(lambda: sum(len(s.acks) for s in senders) >= 40, 30, "acks before")
            acks_before = sum(len(s.acks) for s in senders)
            await asyncio.to_thread(redis.stop, signal.SIGKILL)
            down_at = time.monotonic()
            # A client that loses its socket while Redis is away reconnects (token check, hub) meanwhile.
            await hopper.ws.close()
            await asyncio.sleep(2.0)
            acks_while_down = sum(len(s.acks) for s in senders) - acks_before
            await asyncio.to_thread(redis.start)
            up_at = time.monotonic()
            await asyncio.sleep(2.0)  # chat goes on after Redis is back: the hubs must re-join their groups
            stop_sending = True
            sent = await asyncio.gather(*streams)
            caught_up = await wait_all_caught_up(members, orm_last_seq(room.pk), timeout=30)
            report.update(
                sent_ids={cid for ids in sent for cid in ids},
                redis_down_seconds=round(up_at - down_at, 3),
                acks_while_redis_down=acks_while_down,
                seconds_from_redis_back_to_all_caught_up=round(time.monotonic() - up_at, 3),
                caught_up_after_last_ack_seconds=round(caught_up, 3),
            )
            for member in members:
                await member.stop()

        asyncio.run(scenario())
        stored = stored_history(orm_history(room.pk))
        assert_nothing_lost_nothing_duplicated(members, stored, report["sent_ids"], room.last_seq)
        assert report["acks_while_redis_down"] > 0, "sends are stored while Redis is away"
        assert hopper.stats.reconnects >= 1
        logs = "\n".join(s.log_path.read_text(errors="replace") for s in servers)
        # Those publishes never reached any hub: every member still has them, so the hubs filled from the database.
        assert logs.count("hubs will fill the gap from the database") > 0
        write_report(
            "redis_restart",
            {
                "servers": 2,
                "messages_sent": len(report.pop("sent_ids")),
                "messages_stored": len(stored),
                **report,
                **summarize(members),
                "publishes_failed_logged": logs.count("hubs will fill the gap from the database"),
                "socket_closed_during_outage_resumed_after_seconds": round(hopper.stats.recover_seconds[0], 3),
                "its_failed_connect_attempts": hopper.stats.failed_connects,
            },
        )
    finally:
        redis.stop()


# --- 3. PostgreSQL restarted ------------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.parametrize("pool_timeout", [20, 1], ids=["default_pool_wait", "short_pool_wait"])
def test_postgresql_restarted_sends_get_unavailable_then_succeed_on_retry_with_the_same_client_id(
    cluster, pool_timeout: int
):
    """With the default pool wait (20 s) a send during a short outage waits for the database; with a short
    one (1 s) it gets `unavailable` again and again while the database is away (the pool's timeout path)."""
    room, users = make_room_with_members(10, "postgres restart")
    database = OwnPostgres()
    try:
        database.create()
        database.copy_test_database()
        env = {"DATABASE_URL": database.url, "DATABASE_POOL_TIMEOUT": str(pool_timeout)}
        (server,) = cluster(1, env=env, name="pg")
        members = members_for(room, users, [server])
        senders = members[:3]
        per_sender = 50
        report: dict[str, Any] = {}

        def private_last_seq() -> int:
            return int(database.query("SELECT last_seq FROM rooms_room WHERE id = %s", [room.pk])[0][0])

        async def scenario() -> None:
            await start_members(members)
            streams = [
                asyncio.ensure_future(send_stream(s, per_sender, 0.05, f"{s.name}-{uuid.uuid4().hex[:4]}"))
                for s in senders
            ]
            await senders[0].wait_for(lambda: sum(len(s.acks) for s in senders) >= 30, 30, "acks before")
            await asyncio.to_thread(database.stop)
            down_at = time.monotonic()
            await asyncio.sleep(0.5)  # an ack of a commit just before the stop may still be on its way
            acks_before = sum(len(s.acks) for s in senders)
            await asyncio.sleep(2.5)
            errors_while_down = sum(s.stats.unavailable_errors for s in senders)
            acks_while_down = sum(len(s.acks) for s in senders) - acks_before
            await asyncio.to_thread(database.start)
            up_at = time.monotonic()
            acks_at_up = sum(len(s.acks) for s in senders)
            errors_at_up = sum(s.stats.unavailable_errors for s in senders)
            await senders[0].wait_for(
                lambda: sum(len(s.acks) for s in senders) > acks_at_up, 30, "the first ack after the restart"
            )
            first_ack_after = time.monotonic() - up_at
            sent = await asyncio.gather(*streams)
            caught_up = await wait_all_caught_up(members, private_last_seq, timeout=30)
            report.update(
                sent_ids={cid for ids in sent for cid in ids},
                postgres_down_seconds=round(up_at - down_at, 3),
                unavailable_frames_while_down=errors_while_down,
                unavailable_frames_after_pg_ctl_start_returned=sum(s.stats.unavailable_errors for s in senders)
                - errors_at_up,
                acks_while_down=acks_while_down,
                seconds_from_postgres_back_to_first_ack=round(first_ack_after, 3),
                caught_up_after_last_ack_seconds=round(caught_up, 3),
            )
            for member in members:
                await member.stop()

        asyncio.run(scenario())
        rows = database.query(
            "SELECT seq, kind, client_id FROM messaging_message WHERE room_id = %s ORDER BY seq", [room.pk]
        )
        stored = stored_history([(int(seq), kind, cid) for seq, kind, cid in rows])
        assert_nothing_lost_nothing_duplicated(members, stored, report["sent_ids"], room.last_seq)
        summary = summarize(members)
        assert report["acks_while_down"] == 0, "nothing can be stored while the database is away"
        assert report["unavailable_frames_while_down"] > 0, "a send while the database is away gets `unavailable`"
        assert summary["reconnects"] == 0, "an unavailable database closes no socket"
        assert not [e for m in members for e in m.stats.other_errors], "only `unavailable` errors"
        assert summary["longest_wait_for_an_ack_or_error_seconds"] < pool_timeout + 3, "every send is answered"
        if pool_timeout < report["postgres_down_seconds"]:
            assert report["unavailable_frames_while_down"] >= 2 * len(senders), "the pool's timeout is `unavailable`"
        write_report(
            f"postgres_restart_pool_wait_{pool_timeout}s",
            {
                "servers": 1,
                "database_pool_timeout": pool_timeout,
                "messages_sent": len(report.pop("sent_ids")),
                "messages_stored": len(stored),
                **report,
                **summary,
            },
        )
    finally:
        database.destroy()


# --- 4. Kafka stopped -------------------------------------------------------------------------------------------
def run_kafka_outage(cluster: Any, settings: Any, outage_seconds: float, name: str) -> None:
    """Chat runs through a broker outage; the outbox backlog grows; after the broker returns, relay_events
    delivers every event of the room, in order per room, none missing.

    Tansu keeps topics in memory, so a restarted broker starts empty: the events are read in two passes, what
    the first broker got (read before it stops, with the senders paused so nothing is in flight) and what the
    second broker got. Their union must be every outbox event of the room, in outbox order per topic."""
    broker = TansuBroker().start()
    prefix = f"{settings.KAFKA_TOPIC_PREFIX}f{uuid.uuid4().hex[:8]}."
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "KAFKA_TOPIC_PREFIX": prefix}
    relay = RelayProcess(
        {**env, "EVENTS_RELAY_BACKOFF_MAX_SECONDS": "1"},
        name="fault-relay",
        args=["--poll-interval", "0.05", "--stall-restart", "3", "--stats-interval", "2"],
    ).start()
    settings.KAFKA_BOOTSTRAP_SERVERS, settings.KAFKA_TOPIC_PREFIX = broker.bootstrap, prefix
    try:
        room, users = make_room_with_members(10, "kafka outage")
        servers = cluster(2, env=env, name="kafka")
        members = members_for(room, users, servers)
        senders = members[:3]
        report: dict[str, Any] = {}

        def unsent() -> int:
            try:
                return OutboxEvent.objects.filter(room_id=room.pk, sent_at__isnull=True).count()
            finally:
                connection.close()

        def room_event_ids() -> list[str]:
            rows = OutboxEvent.objects.filter(room_id=room.pk).order_by("id").values_list("event_id", flat=True)
            try:
                return [str(event_id) for event_id in rows]
            finally:
                connection.close()

        def consume(expected: int) -> list[Any]:
            result = consume_events(
                group=None, max_events=expected, timeout=30, accept=lambda envelope: envelope["room_id"] == room.pk
            )
            connection.close()
            return result.events

        async def scenario() -> None:
            await start_members(members)
            before = await asyncio.gather(*(send_stream(s, 10, 0.02, f"{s.name}-a") for s in senders))
            await asyncio.to_thread(wait_until, lambda: unsent() == 0, 30, 0.1, "the relay publishes everything")
            first_ids = await asyncio.to_thread(room_event_ids)
            first_pass = await asyncio.to_thread(consume, len(first_ids))

            await asyncio.to_thread(broker.stop)
            down_at = time.monotonic()
            back = False
            streams = [
                asyncio.ensure_future(send_stream(s, 10_000, 0.05, f"{s.name}-b", until=lambda: back)) for s in senders
            ]
            samples = []
            while time.monotonic() - down_at < outage_seconds:
                await asyncio.sleep(1.0)
                body = await asyncio.to_thread(readyz, servers[0])
                samples.append((body["outbox"]["pending"], body["services"]["kafka"]["state"], body["status"]))
            acks_while_down = sum(len(s.acks) for s in senders) - 30
            backlog_at_return = await asyncio.to_thread(unsent)
            await asyncio.to_thread(broker.start)
            up_at = time.monotonic()
            await asyncio.to_thread(wait_until, lambda: unsent() <= 3, 60, 0.1, "the backlog drains")
            drained_after = time.monotonic() - up_at
            back = True
            during = await asyncio.gather(*streams)
            await asyncio.to_thread(wait_until, lambda: unsent() == 0, 30, 0.1, "the relay publishes everything")
            caught_up = await wait_all_caught_up(members, orm_last_seq(room.pk), timeout=30)
            all_ids = await asyncio.to_thread(room_event_ids)
            second_pass = await asyncio.to_thread(consume, len(all_ids) - len(first_ids))
            report.update(
                sent_ids={cid for ids in [*before, *during] for cid in ids},
                first_pass=first_pass,
                second_pass=second_pass,
                all_ids=all_ids,
                samples=samples,
                kafka_down_seconds=round(up_at - down_at, 3),
                acks_while_kafka_down=acks_while_down,
                backlog_when_kafka_returned=backlog_at_return,
                seconds_to_drain_backlog=round(drained_after, 3),
                caught_up_after_last_ack_seconds=round(caught_up, 3),
            )
            for member in members:
                await member.stop()

        asyncio.run(scenario())
        stored = stored_history(orm_history(room.pk))
        assert_nothing_lost_nothing_duplicated(members, stored, report["sent_ids"], room.last_seq)
        samples = report.pop("samples")
        pending = [p for p, _state, _status in samples]
        assert report["acks_while_kafka_down"] > 0, "chat works while Kafka is away"
        assert pending == sorted(pending) and pending[-1] > pending[0], f"the backlog grows: {pending}"
        assert {(state, status) for _p, state, status in samples} == {("degraded", "degraded")}

        events = [*report.pop("first_pass"), *report.pop("second_pass")]
        all_ids = report.pop("all_ids")
        position = {event_id: n for n, event_id in enumerate(all_ids)}
        seen: list[str] = []
        by_topic: dict[str, list[int]] = {}
        for event in events:
            event_id = event.envelope["event_id"]
            if event_id not in seen:
                seen.append(event_id)
                by_topic.setdefault(event.topic, []).append(position[event_id])
        assert sorted(seen, key=position.__getitem__) == all_ids, "every outbox event of the room reached Kafka"
        for topic, positions in by_topic.items():
            assert positions == sorted(positions), f"{topic}: events out of outbox order"
        seqs = [e.envelope["data"]["seq"] for e in events if e.envelope["type"] == "message.created"]
        stored_seqs = [seq for seq, _kind, _cid in orm_history(room.pk)]
        assert sorted(set(seqs)) == stored_seqs, "one message.created per stored message, ENTER included"
        first_seen: list[int] = []
        for seq in seqs:
            if seq not in first_seen:
                first_seen.append(seq)
        assert first_seen == sorted(first_seen), "message.created arrives in seq order"
        assert "kafka reachable again" in relay.log()
        write_report(
            name,
            {
                "servers": 2,
                "messages_sent": len(report.pop("sent_ids")),
                "messages_stored": len(stored),
                "room_events_relayed": len(all_ids),
                "backlog_samples_while_down": pending,
                **report,
                **summarize(members),
            },
        )
    finally:
        relay.stop()
        broker.stop()


@pytest.mark.kafka
@pytest.mark.postgres
def test_kafka_stopped_chat_keeps_working_and_the_relay_delivers_every_event_in_order_afterwards(cluster, settings):
    run_kafka_outage(cluster, settings, outage_seconds=12, name="kafka_outage")


@pytest.mark.soak
@pytest.mark.kafka
@pytest.mark.postgres
def test_kafka_stopped_for_a_full_minute_loses_nothing(cluster, settings):
    run_kafka_outage(cluster, settings, outage_seconds=60, name="kafka_outage_minute")


# --- 5. MongoDB stopped -----------------------------------------------------------------------------------------
@pytest.mark.mongo
@pytest.mark.postgres
@pytest.mark.redis
def test_mongodb_stopped_chat_loses_nothing_readyz_degraded_and_presence_right_again_after(cluster, tmp_path):
    storage = tmp_path / "mongo"
    storage.mkdir()
    mongo = own_mongo(storage).start()
    try:
        env = {
            "MONGODB_URI": f"mongodb://127.0.0.1:{mongo.port}/chattalk_fault",
            "PRESENCE_HEARTBEAT_SECONDS": "1",
            "PRESENCE_TIMEOUT_SECONDS": "4",
        }
        room, users = make_room_with_members(12, "mongo outage")
        servers = cluster(2, env=env, name="mongo")
        members = members_for(room, users, servers)
        senders, leaver, hopper = members[:3], members[11], members[10]
        staying = members[:11]
        watcher_token = access_token_for(users[0])
        report: dict[str, Any] = {}

        async def presence_now() -> dict[int, dict[str, Any]]:
            client = await PresenceClient(servers[1].ws_url, room.pk, watcher_token).connect()
            try:
                await client.wait_until(lambda c: c.of_type("presence.snapshot"), timeout=10)
                return client.participants()
            finally:
                await client.close()

        def presence_right(state: dict[int, dict[str, Any]], left: set[int]) -> bool:
            for user in users:
                row = state.get(user.pk)
                want = (False, 0) if user.pk in left else (True, 1)
                if row is None or (row["connected"], row["connections"]) != want:
                    return False
            return True

        async def wait_presence_right(left: set[int], timeout: float) -> float:
            started = time.monotonic()
            while not presence_right(state := await presence_now(), left):
                assert time.monotonic() - started < timeout, f"presence never right: {state}"
                await asyncio.sleep(0.3)
            return time.monotonic() - started

        async def wait_ready(status: str) -> None:
            for server in servers:
                await asyncio.to_thread(
                    wait_until, lambda s=server: readyz(s)["status"] == status, 30, 0.2, f"/readyz {status}"
                )

        async def scenario() -> None:
            await start_members(members)
            await wait_presence_right(set(), timeout=20)
            stop_sending = False
            streams = [
                asyncio.ensure_future(send_stream(s, 10_000, 0.05, f"{s.name}-m", until=lambda: stop_sending))
                for s in senders
            ]
            await senders[0].wait_for(lambda: sum(len(s.acks) for s in senders) >= 20, 30, "acks before")
            acks_before = sum(len(s.acks) for s in senders)
            await asyncio.to_thread(mongo.stop)
            down_at = time.monotonic()
            # The first /readyz after the stop already says so (it answers after the check's own timeout).
            asked_at = time.monotonic()
            for server in servers:
                body = await asyncio.to_thread(readyz, server)
                assert (body["status"], body["services"]["mongodb"]["state"]) == ("degraded", "degraded"), body
            degraded_answer = (time.monotonic() - asked_at) / len(servers)
            # Sockets come and go while presence is away: one member leaves, one moves to the other server.
            await leaver.stop()
            await hopper.ws.close()
            await hopper.wait_for(lambda: hopper.stats.reconnects == 1 and hopper.ws is not None, 20, "hop")
            # Stay away past the presence timeout, so that every heartbeat in the store is stale.
            await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - down_at)))
            acks_while_down = sum(len(s.acks) for s in senders) - acks_before
            await asyncio.to_thread(mongo.start)
            up_at = time.monotonic()
            await wait_ready("ok")
            ready_after = time.monotonic() - up_at
            presence_after = await wait_presence_right({users[11].pk}, timeout=30) + ready_after
            stop_sending = True
            sent = await asyncio.gather(*streams)
            caught_up = await wait_all_caught_up(staying, orm_last_seq(room.pk), timeout=30)
            report.update(
                sent_ids={cid for ids in sent for cid in ids},
                mongo_down_seconds=round(up_at - down_at, 3),
                readyz_degraded_answer_seconds=round(degraded_answer, 3),
                acks_while_mongo_down=acks_while_down,
                readyz_ok_after_start_seconds=round(ready_after, 3),
                presence_right_after_start_seconds=round(presence_after, 3),
                caught_up_after_last_ack_seconds=round(caught_up, 3),
            )
            for member in staying:
                await member.stop()

        asyncio.run(scenario())
        stored = stored_history(orm_history(room.pk))
        assert_nothing_lost_nothing_duplicated(staying, stored, report["sent_ids"], room.last_seq)
        assert report["acks_while_mongo_down"] > 0, "chat works while MongoDB is away"
        write_report(
            "mongo_outage",
            {
                "servers": 2,
                "messages_sent": len(report.pop("sent_ids")),
                "messages_stored": len(stored),
                **report,
                **summarize(members),
            },
        )
    finally:
        mongo.stop()


# --- an idle hub ------------------------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.redis
def test_an_idle_hub_keeps_its_redis_receive_open_without_read_timeouts(cluster):
    """channels-redis blocks 5 s per BZPOPMIN; a client read timeout no longer than that makes an idle hub's
    receive fail now and then, which costs a second of deafness and a re-add of every group each time."""
    room, users = make_room_with_members(2, "idle")
    (server,) = cluster(1, name="idle")
    members = members_for(room, users, [server])

    async def scenario() -> None:
        await start_members(members)
        await asyncio.sleep(16)  # three of channels-redis' 5 s blocking reads
        await members[0].send_until_acked("after-idle", "still here")
        await members[1].wait_for(lambda: members[1].last_seq > room.last_seq, 5, "the message after the idle time")
        for member in members:
            await member.stop()

    asyncio.run(scenario())
    log = server.log_path.read_text(errors="replace")
    assert "hub receive failed" not in log, log[-3000:]
