"""What the fault tests share: members that follow a room across sockets and servers, private services that a
test may kill and start again, and the final "nothing lost, nothing duplicated" check against the history.

Services that a test breaks are always its own (a redis-server, a PostgreSQL cluster, a SecantusDB on free
ports): the shared ones serve the test process itself and the other test runs on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from django.conf import settings

from core.testing import (
    OwnServiceProcess,
    ServerProcess,
    free_port,
    test_database_url,
)

BASE_DIR = Path(settings.BASE_DIR)
PG_BIN = Path("/usr/lib/postgresql/15/bin")


# --- members ----------------------------------------------------------------------------------------------
@dataclass
class MemberStats:
    sockets: int = 0  # sockets opened, the first one included
    reconnects: int = 0
    failed_connects: int = 0
    recover_seconds: list[float] = field(default_factory=list)  # socket lost -> resumed (synced) again
    close_codes: list[int | None] = field(default_factory=list)
    unavailable_errors: int = 0
    other_errors: list[dict[str, Any]] = field(default_factory=list)
    resends: int = 0


class Member:
    """A chat member as a careful client behaves: one socket at a time; when it is lost, reconnect (to the
    next server in the list) with ?after_seq=<last seq seen>; resend unacknowledged sends with their
    client_id. Records every message frame in arrival order across sockets, and every order violation."""

    def __init__(
        self, name: str, room_id: int, token: str, servers: Sequence[ServerProcess], first_server: int, after_seq: int
    ) -> None:
        self.name = name
        self.room_id = room_id
        self.token = token
        self.servers = list(servers)
        self.server_index = first_server
        self.last_seq = after_seq
        self.received: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self.acks: dict[str, int] = {}
        self.resent: set[str] = set()  # client_ids sent more than once
        self.answer_seconds: list[float] = []  # send frame -> its ack or error frame, per attempt
        self._sent_at: dict[str, float] = {}
        self.stats = MemberStats()
        self.ws: Any = None
        self.connection_number = 0  # increases with every socket that reached `synced`
        self.stopping = False
        self._changed = asyncio.Event()
        self._lost_at: float | None = None
        self._errors_for: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    # --- socket life ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            await self.ws.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def server(self) -> ServerProcess:
        return self.servers[self.server_index % len(self.servers)]

    async def _run(self) -> None:
        while not self.stopping:
            server = self.server
            url = f"{server.ws_url}/ws/rooms/{self.room_id}/?access_token={self.token}&after_seq={self.last_seq}"
            try:
                ws = await websockets.connect(url, open_timeout=5, close_timeout=2, max_size=2**22)
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed):
                self.stats.failed_connects += 1
                self.server_index += 1  # that server is away: try the next one
                await asyncio.sleep(0.05)
                continue
            self.ws = ws
            self.stats.sockets += 1
            if self.stats.sockets > 1:
                self.stats.reconnects += 1
            try:
                async for raw in ws:
                    self._on_frame(json.loads(raw))
            except websockets.ConnectionClosed:
                pass
            self.ws = None
            self.stats.close_codes.append(ws.close_code)
            self._changed.set()
            if self.stopping:
                break
            self._lost_at = time.monotonic()
            self.server_index += 1
            await asyncio.sleep(0.05)

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            message = frame["message"]
            seq = int(message["seq"])
            if seq <= self.last_seq:
                self.violations.append(f"{self.name}: seq {seq} again after {self.last_seq}")
                return
            if seq != self.last_seq + 1:
                self.violations.append(f"{self.name}: gap {self.last_seq} -> {seq}")
            self.last_seq = seq
            self.received.append(message)
        elif kind == "synced":
            self.connection_number += 1
            if self._lost_at is not None:
                self.stats.recover_seconds.append(time.monotonic() - self._lost_at)
                self._lost_at = None
        elif kind == "ack":
            client_id, seq = frame["client_id"], int(frame["seq"])
            self._answered(client_id)
            if self.acks.setdefault(client_id, seq) != seq:
                self.violations.append(f"{self.name}: {client_id} acked as {self.acks[client_id]} and {seq}")
        elif kind == "error":
            if frame.get("client_id"):
                self._answered(frame["client_id"])
            if frame.get("code") == "unavailable":
                self.stats.unavailable_errors += 1
                if frame.get("client_id"):
                    self._errors_for[frame["client_id"]] = self._errors_for.get(frame["client_id"], 0) + 1
            else:
                self.stats.other_errors.append(frame)
        self._changed.set()

    def _answered(self, client_id: str) -> None:
        sent_at = self._sent_at.pop(client_id, None)
        if sent_at is not None:
            self.answer_seconds.append(time.monotonic() - sent_at)

    async def wait_for(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: {what} not reached within {timeout} s; stats {self.stats}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.25))
            except TimeoutError:
                pass

    async def wait_synced(self, timeout: float = 20.0) -> None:
        await self.wait_for(lambda: self.connection_number > 0, timeout, "first synced")

    # --- sending ----------------------------------------------------------------------------------------
    async def send_until_acked(self, client_id: str, body: str, timeout: float = 60.0) -> int:
        """Send, then resend with the same client_id whenever the socket was replaced or the server said
        `unavailable`, until the ack arrives. Returns the acked seq."""
        deadline = time.monotonic() + timeout
        sent_on: int | None = None
        errors_seen = 0
        while client_id not in self.acks:
            errors_now = self._errors_for.get(client_id, 0)
            ws, connection = self.ws, self.connection_number
            must_send = sent_on != connection or errors_now > errors_seen
            if ws is not None and connection > 0 and must_send:
                if errors_now > errors_seen:
                    await asyncio.sleep(0.2)  # the server said "not stored": retry shortly
                if sent_on is not None:
                    self.stats.resends += 1
                    self.resent.add(client_id)
                errors_seen = errors_now
                sent_on = connection
                self._sent_at[client_id] = time.monotonic()
                try:
                    await ws.send(json.dumps({"type": "send", "client_id": client_id, "body": body}))
                except websockets.ConnectionClosed:
                    pass  # the reconnect resends
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {client_id} never acked; stats {self.stats}")
            self._changed.clear()
            if client_id in self.acks:
                break
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=0.25)
            except TimeoutError:
                pass
        return self.acks[client_id]

    def talk(self) -> list[tuple[int, str]]:
        return [(int(m["seq"]), m["client_id"]) for m in self.received if m["kind"] == "TALK"]


async def send_stream(
    member: Member, count: int, interval: float, prefix: str, until: Callable[[], bool] | None = None
) -> list[str]:
    """A sender: `count` messages (or until `until()` is true), each acked before the next, `interval` apart."""
    sent = []
    for n in range(count):
        if until is not None and until():
            break
        client_id = f"{prefix}-{n}"
        await member.send_until_acked(client_id, f"{prefix} says {n}")
        sent.append(client_id)
        await asyncio.sleep(interval)
    return sent


# --- the final check --------------------------------------------------------------------------------------
def stored_history(rows: Sequence[tuple[int, str, str]]) -> list[tuple[int, str]]:
    """(seq, kind, client_id) rows of one room in seq order -> its TALK (seq, client_id), after checking that
    seq is gapless from 1 and no client_id was stored twice."""
    seqs = [seq for seq, _kind, _cid in rows]
    assert seqs == list(range(1, len(seqs) + 1)), f"stored seq is not gapless: {seqs[:5]}...{seqs[-5:]}"
    talk = [(seq, cid) for seq, kind, cid in rows if kind == "TALK"]
    client_ids = [cid for _seq, cid in talk]
    assert len(client_ids) == len(set(client_ids)), "a client_id was stored twice"
    return talk


def assert_nothing_lost_nothing_duplicated(
    members: Sequence[Member], stored_talk: list[tuple[int, str]], sent_client_ids: set[str], after_seq: int
) -> None:
    """Every send stored once; every member saw every TALK message after `after_seq` once, in seq order."""
    stored_ids = {cid for _seq, cid in stored_talk}
    assert sent_client_ids <= stored_ids, f"lost sends: {sorted(sent_client_ids - stored_ids)[:10]}"
    expected = [(seq, cid) for seq, cid in stored_talk if seq > after_seq]
    violations = [v for m in members for v in m.violations]
    assert not violations, violations[:10]
    for member in members:
        got = member.talk()
        if got != expected:
            missing = sorted(set(expected) - set(got))[:5]
            extra = sorted(set(got) - set(expected))[:5]
            raise AssertionError(f"{member.name}: {len(got)} of {len(expected)}; missing {missing}, extra {extra}")


# --- service processes ------------------------------------------------------------------------------------
def own_mongo(storage: Path) -> OwnServiceProcess:
    port = free_port()
    binary = Path(sys.executable).parent / "secantusd-py"
    command = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage)]
    return OwnServiceProcess("secantusd", command, port)


class OwnPostgres:
    """A private PostgreSQL 15 cluster (trust auth, no fsync) holding a copy of the test database, so that a
    test can restart it under a server process while the test's own connections stay on the shared one.
    initdb refuses root: the cluster belongs to the `postgres` user, and its tools run as that user."""

    def __init__(self, database: str = "chattalk_fault") -> None:
        # Not under pytest's tmp_path: that is private to root, and the server runs as `postgres`.
        self.root = Path(tempfile.mkdtemp(prefix="chattalk-fault-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.database = database
        self.log_path = self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.database}"

    def _as_postgres(self, *args: str, timeout: float = 60.0) -> None:
        runner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*runner, *args], timeout=timeout, capture_output=True)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.decode(errors='replace')[-800:]}")

    def create(self) -> OwnPostgres:
        if os.geteuid() == 0:
            shutil.chown(self.root, user="postgres")
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log_path), "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """fast: every session is ended at once (FATAL: terminating connection due to administrator command)."""
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def copy_test_database(self) -> None:
        """The test database as it is now (schema and committed rows) into this cluster."""
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-q",
                "-c",
                f"CREATE DATABASE {self.database}",
            ],
            check=True,
            capture_output=True,
        )
        dump = subprocess.run(["pg_dump", "--no-owner", test_database_url()], check=True, capture_output=True)
        subprocess.run(
            ["psql", "-q", "-v", "ON_ERROR_STOP=1", self.url],
            input=dump.stdout,
            check=True,
            capture_output=True,
        )

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
            return list(conn.execute(sql, params).fetchall())


# --- readiness ----------------------------------------------------------------------------------------------
def readyz(server: ServerProcess) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{server.http_url}/readyz", timeout=10) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read()))
