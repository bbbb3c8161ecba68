"""The login and signup limits per client address, through the production server command (scripts/serve).

uvicorn takes the client's address from X-Forwarded-For when the connection comes from a proxy it trusts; by
default it trusted 127.0.0.1, so any local client (or one behind a local proxy that passes the header on)
picked a fresh address per attempt. X-Forwarded-For now counts only from the proxies TRUSTED_PROXIES names.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from core.testing import BASE_DIR, ServerProcess

LIMITED = {
    "RATE_LIMITS": "on",
    "THROTTLE_LOGIN_IP": "3/min",
    "THROTTLE_LOGIN_USERNAME": "1000/min",
    "THROTTLE_SIGNUP_IP": "2/hour",
    "THROTTLE_SIGNUP_USERNAME": "1000/hour",
}


def login_from(server: ServerProcess, forwarded_for: str, username: str) -> int:
    response = httpx.post(
        f"{server.http_url}/api/auth/login",
        json={"username": username, "password": "wrong-guess"},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=10,
    )
    return response.status_code


def signup_from(server: ServerProcess, forwarded_for: str, username: str) -> int:
    response = httpx.post(
        f"{server.http_url}/api/auth/signup",
        json={"username": username, "password": "Long-enough-pw-77"},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=10,
    )
    return response.status_code


def test_rotating_x_forwarded_for_gets_no_fresh_login_or_signup_allowance_when_no_proxy_is_trusted(server_factory):
    server = server_factory(env={**LIMITED, "TRUSTED_PROXIES": ""})
    # scripts/serve replaced itself with the server: the pid the caller holds is uvicorn's.
    cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    assert b"uvicorn" in cmdline, cmdline

    logins = [login_from(server, f"203.0.113.{i}", f"guess{i}") for i in range(1, 7)]
    assert logins == [401, 401, 401, 429, 429, 429]
    signups = [signup_from(server, f"198.51.100.{i}", f"newcomer{i}") for i in range(1, 5)]
    assert signups == [201, 201, 429, 429]


def test_with_the_loopback_as_trusted_proxy_the_forwarded_address_is_the_one_counted(server_factory):
    server = server_factory(env={**LIMITED, "TRUSTED_PROXIES": "127.0.0.0/8, ::1"})

    # Six clients behind the proxy: each has its own allowance.
    assert [login_from(server, f"203.0.113.{i}", f"guess{i}") for i in range(1, 7)] == [401] * 6
    # One of them spends its own: the fourth attempt from that address is refused...
    assert [login_from(server, "192.0.2.50", f"again{i}") for i in range(3)] == [401, 401, 401]
    assert login_from(server, "192.0.2.50", "again4") == 429
    # ...also when it puts made-up hops in front: the address the trusted proxy appended is the one counted.
    assert login_from(server, "10.9.9.9, 192.0.2.50", "again5") == 429
    assert login_from(server, "192.0.2.51", "again6") == 401


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRUSTED_PROXIES", "10.0.0.1/8"),  # host bits set: uvicorn would never match it
        ("TRUSTED_PROXIES", "*"),  # "everyone" is the hole itself
        ("TRUSTED_PROXIES", "proxy.internal"),  # a name: uvicorn compares it with the peer's IP and never matches
        ("TRUSTED_PROXY_COUNT", "1"),  # the old setting, silently ignored otherwise
    ],
)
def test_the_server_refuses_to_start_with_a_trusted_proxies_entry_that_cannot_work(name, value, transactional_db):
    server = ServerProcess(env={name: value}, name="bad-proxies")
    server.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(server.log_path, "ab") as log:
        result = subprocess.run(
            server.command(), cwd=BASE_DIR, env=server.environment(), stdout=log, stderr=subprocess.STDOUT, timeout=60
        )
    assert result.returncode != 0
    assert "TRUSTED_PROXIES" in server.log_tail(5), server.log_tail()
