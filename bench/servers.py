"""Servers under test and what the kernel says about them: CPU time and resident memory from /proc.

`ServedApp` starts an ASGI app with the project's server command (scripts/serve: uvicorn, wsproto, uvloop,
httptools, and its keepalive and compression defaults), on a loopback port, with this process's environment
(same database, Redis and secret) and rate limits off, so that ChatTalk and the baseline are served and
measured identically in one run, and as production serves them. Its `deflate` says whether
the server may accept permessage-deflate (uvicorn's --ws-per-message-deflate); None is what the project's
server command does by default (scripts/serve, WS_COMPRESSION off: declined).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

APPS = {
    "chattalk": "chattalk_project.asgi:application",
    "baseline": "bench.baseline_asgi:application",
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERVE_SCRIPT = Path(settings.BASE_DIR) / "scripts" / "serve"


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent not idle (all cores), from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def loadavg() -> float:
    """The 1-minute load average: other work on the machine skews latency figures, so runs record it."""
    with open("/proc/loadavg") as load:
        return float(load.read().split()[0])


@dataclass
class CpuSnapshot:
    per_pid: dict[int, float]
    machine: float
    at: float

    @classmethod
    def take(cls, pids: list[int]) -> CpuSnapshot:
        return cls({pid: process_cpu_seconds(pid) for pid in pids}, machine_busy_seconds(), time.monotonic())

    def since(self, earlier: CpuSnapshot) -> tuple[float, float]:
        """(CPU seconds of the given pids, busy CPU seconds of the whole machine) between two snapshots."""
        servers = sum(self.per_pid[pid] - earlier.per_pid.get(pid, self.per_pid[pid]) for pid in self.per_pid)
        return servers, self.machine - earlier.machine


class ServedApp:
    """One uvicorn process serving `app` ("chattalk" or "baseline") on 127.0.0.1:port; `deflate` True or False
    turns permessage-deflate on or off in the server, None is the server command's default (off)."""

    def __init__(self, app: str, port: int, deflate: bool | None = None, env: dict[str, str] | None = None):
        if app not in APPS:
            raise ValueError(f"unknown app {app!r}; one of {sorted(APPS)}")
        self.app, self.port, self.deflate = app, port, deflate
        # Production settings (DEBUG off: no per-query debug bookkeeping), signing with this process's key: the
        # scenarios mint their users' tokens here.
        production = {"DEBUG": "0", "SECRET_KEY": settings.SECRET_KEY}
        self.env = {**os.environ, **production, "RATE_LIMITS": "off", "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_path = Path("var") / f"bench-{app}-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        return [str(SERVE_SCRIPT), "127.0.0.1", str(self.port)]

    def server_env(self) -> dict[str, str]:
        """scripts/serve's settings: this app, uvicorn, warnings only; WS_COMPRESSION and WS_PING_SECONDS as
        this process has them unless `deflate` says otherwise (None: the command's default)."""
        env = {**self.env, "ASGI_APP": APPS[self.app], "SERVER": "uvicorn", "LOG_LEVEL": "warning"}
        env.update({"ACCESS_LOG": "off", "PYTHON": sys.executable})
        if self.deflate is not None:
            env["WS_COMPRESSION"] = "on" if self.deflate else "off"
        return env

    def start(self, timeout: float = 60.0) -> ServedApp:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(self.command(), env=self.server_env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.app} exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.app} did not answer on port {self.port} within {timeout} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
