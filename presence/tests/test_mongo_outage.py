"""MongoDB stopped and started again while users chat: no chat message is lost, /readyz says degraded
meanwhile, and presence is right again afterwards without anyone reconnecting.

The test runs its own SecantusDB on a free port with its own storage (never the shared server)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.testing import access_token_for
from core.testing import free_port, port_answers
from messaging.models import Message
from messaging.testing import ChatClient
from presence.testing import PresenceClient

from .factories import make_room, make_user
from .test_sockets import FAST_PRESENCE, wait_for_member

pytestmark = [pytest.mark.mongo, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


class OwnMongo:
    """A SecantusDB server of this test alone; stop() and start() keep its data."""

    def __init__(self, storage: Path):
        self.port = free_port()
        self.storage = storage
        self.log_path = storage.parent / "secantusd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/chattalk_h4_outage"

    def start(self) -> None:
        binary = Path(sys.executable).parent / "secantusd-py"
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [str(binary), "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", str(self.storage)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while not port_answers("127.0.0.1", self.port):
            assert self.process.poll() is None, f"secantusd exited; see {self.log_path}"
            assert time.monotonic() < deadline, "secantusd did not answer"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while port_answers("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.1)


@pytest.fixture
def own_mongo(tmp_path: Path) -> Iterator[OwnMongo]:
    storage = tmp_path / "mongo-data"
    storage.mkdir()
    mongo = OwnMongo(storage)
    mongo.start()
    yield mongo
    mongo.stop()


def readyz(server: Any) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{server.http_url}/readyz", timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def wait_ready_state(server: Any, status: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = readyz(server)
        if body.get("status") == status:
            return body
        time.sleep(0.2)
    raise AssertionError(f"/readyz never said {status}: {body}")


async def send_and_ack(client: ChatClient, bodies: list[str]) -> None:
    ids = [await client.send_message(body) for body in bodies]
    await client.wait_until(lambda c: {f["client_id"] for f in c.of_type("ack")} >= set(ids), timeout=15)


def test_mongodb_stopped_and_started_again_while_users_chat(server_factory, own_mongo):
    alice, bob = make_user("alice"), make_user("bob")
    room = make_room(alice, bob)
    env = {**FAST_PRESENCE, "MONGODB_URI": own_mongo.uri}
    first, second = server_factory(env=env, name="mongo-a"), server_factory(env=env, name="mongo-b")
    alice_token, bob_token = access_token_for(alice), access_token_for(bob)

    async def scenario() -> None:
        tab1 = await ChatClient(first.ws_url, room.pk, alice_token).connect()
        bob_chat = await ChatClient(second.ws_url, room.pk, bob_token).connect()
        watcher = await PresenceClient(second.ws_url, room.pk, bob_token).connect()
        await watcher.wait_for(alice.pk, connected=True, connections=1)
        assert (await asyncio.to_thread(readyz, first))["status"] == "ok"

        await asyncio.to_thread(own_mongo.stop)
        down = await asyncio.to_thread(wait_ready_state, first, "degraded")
        assert down["services"]["mongodb"]["state"] == "degraded"

        during = await PresenceClient(first.ws_url, room.pk, bob_token).connect()
        await during.wait_until(lambda c: c.of_type("presence.snapshot"))
        assert during.of_type("presence.snapshot")[0]["degraded"] is True
        await during.close()

        # Chat goes on while presence is away; sockets open and close too.
        await send_and_ack(tab1, [f"alice {i}" for i in range(5)])
        await send_and_ack(bob_chat, [f"bob {i}" for i in range(5)])
        tab2 = await ChatClient(second.ws_url, room.pk, alice_token).connect()
        await tab1.close()
        await send_and_ack(tab2, [f"alice again {i}" for i in range(5)])
        await bob_chat.wait_until(lambda c: len(c.messages()) == 15, timeout=15)
        # Stay away longer than the presence timeout: every heartbeat in the store is stale by now, so the
        # counts below prove that the processes re-registered their open sockets themselves.
        await asyncio.sleep(int(FAST_PRESENCE["PRESENCE_TIMEOUT_SECONDS"]) + 0.5)
        seqs = [m["seq"] for m in bob_chat.messages(kind=None)]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

        await asyncio.to_thread(own_mongo.start)
        await asyncio.to_thread(wait_ready_state, first, "ok")
        await asyncio.to_thread(wait_ready_state, second, "ok")

        # Presence is right again by itself: tab1 (closed while MongoDB was away) is gone, tab2 (opened
        # meanwhile) is registered; bob's chat socket is still counted.
        deadline = time.monotonic() + 20
        while True:
            fresh = await PresenceClient(first.ws_url, room.pk, bob_token).connect()
            await fresh.wait_until(lambda c: c.of_type("presence.snapshot"))
            state = fresh.participants()
            degraded = fresh.of_type("presence.snapshot")[0]["degraded"]
            await fresh.close()
            if not degraded and state[alice.pk]["connections"] == 1 and state[bob.pk]["connections"] == 1:
                break
            assert time.monotonic() < deadline, f"presence never recovered: {state}"
            await asyncio.sleep(0.5)
        assert state[alice.pk]["connected"] is True
        await watcher.wait_for(alice.pk, connected=True, connections=1)

        await tab2.close()
        await watcher.wait_for(alice.pk, connected=False, connections=0)
        row = await asyncio.to_thread(wait_for_member, second, room.pk, bob_token, alice.pk, connected=False)
        assert row["left_at"] is not None
        await bob_chat.close()
        await watcher.close()

    asyncio.run(scenario())
    assert Message.objects.filter(room=room, kind="TALK").count() == 15
    first_log = first.log_path.read_text(errors="replace")
    assert "presence degraded" in first_log and "presence recovered" in first_log
