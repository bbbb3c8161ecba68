"""TurnGate as a unit: an ASGI app stands in for Django, a queue of messages for the client."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.turns import TurnGate, views_marked

Message = dict[str, Any]


class Client:
    """One request's client: hands the body to `receive`, then waits until told it went away."""

    def __init__(self, body: bytes = b"{}"):
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.inbox.put_nowait({"type": "http.request", "body": body, "more_body": False})
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def go_away(self) -> None:
        self.inbox.put_nowait({"type": "http.disconnect"})


class SlowApp:
    """Reads the body, then holds its turn until released; records the order and the most at once."""

    def __init__(self) -> None:
        self.running = 0
        self.most_at_once = 0
        self.started: list[str] = []
        self.bodies: list[bytes] = []
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.started.append(scope["path"])
        self.bodies.append((await receive())["body"])
        try:
            await self.release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        finally:
            self.running -= 1


def http(path: str, method: str = "POST") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path}


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_requests_it_selects_run_at_most_limit_at_once_and_start_in_arrival_order():
    async def scenario() -> SlowApp:
        app = SlowApp()
        gate = TurnGate(app, lambda scope: True, lambda: 2)
        clients = [Client(body=str(i).encode()) for i in range(6)]
        tasks = []
        for i, client in enumerate(clients):
            tasks.append(asyncio.ensure_future(gate(http(f"/login/{i}"), client.receive, client.send)))
            await settle()
        assert app.running == 2
        app.release.set()
        await asyncio.gather(*tasks)
        return app

    app = asyncio.run(scenario())
    assert app.most_at_once == 2
    assert app.started == [f"/login/{i}" for i in range(6)]
    assert app.bodies == [str(i).encode() for i in range(6)]  # what was read while waiting reaches the app


def test_a_client_that_goes_away_while_waiting_leaves_the_queue_without_taking_a_turn():
    async def scenario() -> tuple[SlowApp, list[Message]]:
        app = SlowApp()
        gate = TurnGate(app, lambda scope: True, lambda: 1)
        first, leaver, last = Client(), Client(), Client()
        tasks = [
            asyncio.ensure_future(gate(http(path), c.receive, c.send))
            for path, c in (("/first", first), ("/leaver", leaver), ("/last", last))
        ]
        await settle()
        leaver.go_away()
        await asyncio.wait_for(tasks[1], 1)  # it returns at once, before any turn is free
        app.release.set()
        await asyncio.gather(*tasks)
        return app, leaver.sent

    app, answered_to_leaver = asyncio.run(scenario())
    assert app.started == ["/first", "/last"]
    assert answered_to_leaver == []
    assert app.most_at_once == 1


def test_requests_it_does_not_select_never_wait():
    async def scenario() -> SlowApp:
        app = SlowApp()
        gate = TurnGate(app, lambda scope: scope["path"] == "/login", lambda: 1)
        holder, other = Client(), Client()
        held = asyncio.ensure_future(gate(http("/login"), holder.receive, holder.send))
        await settle()
        passing = asyncio.ensure_future(gate(http("/api/rooms", "GET"), other.receive, other.send))
        await settle()
        assert app.started == ["/login", "/api/rooms"]  # not behind the login holding the only turn
        app.release.set()
        await asyncio.gather(held, passing)
        return app

    assert asyncio.run(scenario()).most_at_once == 2


def test_a_limit_of_zero_turns_the_gate_off():
    async def scenario() -> SlowApp:
        app = SlowApp()
        gate = TurnGate(app, lambda scope: True, lambda: 0)
        clients = [Client() for _ in range(3)]
        tasks = [asyncio.ensure_future(gate(http("/login"), c.receive, c.send)) for c in clients]
        await settle()
        app.release.set()
        await asyncio.gather(*tasks)
        return app

    assert asyncio.run(scenario()).most_at_once == 3


def test_a_turn_is_given_back_when_the_app_fails():
    async def scenario() -> list[str]:
        calls: list[str] = []

        async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
            calls.append(scope["path"])
            raise RuntimeError("boom")

        gate = TurnGate(failing, lambda scope: True, lambda: 1)
        for path in ("/a", "/b"):
            client = Client()
            with pytest.raises(RuntimeError):
                await asyncio.wait_for(gate(http(path), client.receive, client.send), 1)
        return calls

    assert asyncio.run(scenario()) == ["/a", "/b"]


@pytest.mark.parametrize(
    ("method", "path", "selected"),
    [
        ("POST", "/api/auth/login", True),
        ("POST", "/api/auth/signup", True),
        ("POST", "/api/auth/password", True),
        ("POST", "/login/", True),
        ("GET", "/login/", False),  # the form itself hashes nothing
        ("POST", "/api/auth/refresh", False),
        ("POST", "/api/rooms", False),
        ("POST", "/no/such/page", False),
    ],
)
def test_the_password_turn_selects_the_posts_of_the_views_that_hash(method, path, selected):
    from accounts.password_pool import PASSWORD_TURN

    assert views_marked(PASSWORD_TURN)({"type": "http", "method": method, "path": path}) is selected
