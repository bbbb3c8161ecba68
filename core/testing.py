"""Test helpers shared by every app's tests: real server processes and service probes.

A `ServerProcess` is a real server process, started by the production command `scripts/serve`, serving ChatTalk
against the test database that pytest-django created, with the same Redis/Kafka/MongoDB settings as the test run.
Tests that use one need committed data (`transactional_db`), since the server sees only what is committed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, connections

from .replica import REPLICA_ALIAS

BASE_DIR = Path(settings.BASE_DIR)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def test_database_url() -> str:
    """The URL of the database the tests are using right now (pytest-django's test_... database)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = db.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def test_replica_url() -> str | None:
    """The URL of the test database on the streaming replica (the same name as on the primary), if any."""
    if REPLICA_ALIAS not in settings.DATABASES:
        return None
    replica = connections.settings[REPLICA_ALIAS]
    host, port = replica.get("HOST") or "127.0.0.1", replica.get("PORT") or 5432
    user, password = replica.get("USER") or "", replica.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{auth}{host}:{port}/{connection.settings_dict['NAME']}"


class ReplicaControl:
    """Drives the streaming replica from a test: wait until it has applied what the primary committed, pause
    and resume its replay (PostgreSQL's pg_wal_replay_pause: a replica that lags for as long as a test
    wants)."""

    def _replica_value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with connections[REPLICA_ALIAS].cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]

    def _wait_until(self, sql: str, params: Sequence[Any], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._replica_value(sql, params):
            if time.monotonic() > deadline:
                raise AssertionError(f"the replica did not {what} within {timeout:.0f} s")
            time.sleep(0.02)

    def catch_up(self) -> None:
        """Return once the replica has applied everything the primary has committed so far."""
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()")
            target = cursor.fetchone()[0]
        self._wait_until("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target], "catch up")

    def pause(self) -> None:
        self._replica_value("SELECT pg_wal_replay_pause()")
        self._wait_until("SELECT pg_get_wal_replay_pause_state() = 'paused'", [], "pause its replay")

    def resume(self) -> None:
        self._replica_value("SELECT pg_wal_replay_resume()")


class ServerProcess:
    """One ChatTalk ASGI process on its own port."""

    def __init__(self, env: dict[str, str] | None = None, port: int | None = None, name: str = "web"):
        self.port = port or free_port()
        self.name = name
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = BASE_DIR / "var" / f"server-{name}-{self.port}.log"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": test_database_url(),
                "TESTING": "1",
                "DEBUG": "1",
                "PYTHONUNBUFFERED": "1",
                "DJANGO_SETTINGS_MODULE": "chattalk_project.settings",
                "PYTHON": sys.executable,
            }
        )
        replica_url = test_replica_url()
        if replica_url is not None:
            env["DATABASE_REPLICA_URL"] = replica_url  # the replica's copy of the test database
        env.update(self.extra_env)
        return env

    def command(self) -> list[str]:
        """The production server command (scripts/serve); uvicorn's own lines only from WARNING up, unless the
        test sets LOG_LEVEL (or SERVER=daphne, which is quiet already)."""
        quiet = [] if "LOG_LEVEL" in self.extra_env or "SERVER" in self.extra_env else ["--log-level", "warning"]
        return [str(BASE_DIR / "scripts" / "serve"), "127.0.0.1", str(self.port), *quiet]

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            self.command(), cwd=BASE_DIR, env=self.environment(), stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server on port {self.port} did not answer within {timeout} s; see {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        stop_process(self.process, sig, timeout)

    def kill(self) -> None:
        """SIGKILL: no disconnect handler runs, as when a machine dies."""
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def stop_process(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
    """Send `sig`, wait up to `timeout`, then SIGKILL; returns the exit code (None if never started)."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    return process.returncode


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(interval)


class OwnServiceProcess:
    """A service of one test on its own port (redis-server, a broker, a database); a test that breaks a service
    always breaks its own, never the shared one. stop() and start() reuse the port."""

    def __init__(self, name: str, command: Sequence[str], port: int, stop_timeout: float = 20.0) -> None:
        self.name = name
        self.command = list(command)
        self.port = port
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = BASE_DIR / "var" / f"{name}-{port}.log"

    def start(self, timeout: float = 20.0) -> OwnServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not port_answers("127.0.0.1", self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer on {self.port}; see {self.log_path}")
            time.sleep(0.05)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        stop_process(self.process, sig, self.stop_timeout)
        wait_until(lambda: not port_answers("127.0.0.1", self.port), 15, what=f"port {self.port} closed")


def own_redis() -> OwnServiceProcess:
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return OwnServiceProcess("redis", [*command, "--daemonize", "no"], port)
