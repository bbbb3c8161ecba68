"""A real ChatTalk server process and the bench client's two kinds of socket: one that offers
permessage-deflate as browsers do, one that offers nothing. Members of one room must read the same messages,
in the same order, byte for byte once inflated, live and across a resume; and a server started with
compression off must still serve a socket that offered it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

from bench.client import WebSocketClient, connect
from bench.scenarios import drop_room, prepare_room
from bench.servers import ServedApp
from core.testing import free_port
from core.testing import test_database_url as current_database_url


async def wait_for(condition: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


class Reader:
    """Keeps every text frame a socket receives, raw (as the client hands it over: inflated if compressed)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.socket: WebSocketClient | None = None

    def __call__(self, data: bytes) -> None:
        self.frames.append(data)

    def of_type(self, kind: str) -> list[bytes]:
        return [frame for frame in self.frames if json.loads(frame).get("type") == kind]

    def seqs(self) -> list[int]:
        return [json.loads(frame)["message"]["seq"] for frame in self.of_type("message")]


async def open_reader(url: str, token: str, deflate: bool, after_seq: int | None = None) -> Reader:
    reader = Reader()
    query = f"?access_token={token}" + (f"&after_seq={after_seq}" if after_seq is not None else "")
    reader.socket = await connect(url + query, reader, deflate=deflate)
    reader.socket.send_json({"type": "ping"})
    await wait_for(lambda: reader.of_type("pong"), what="pong")
    return reader


def send(reader: Reader, body: str) -> None:
    assert reader.socket is not None
    reader.socket.send_json({"type": "send", "client_id": str(uuid.uuid4()), "body": body})


BODIES = [
    "hello",
    "the same words again and again, the same words again and again",
    "ünïcödé — 你好 — 🙂",
    "x" * 3000,  # a frame long enough that the server's deflate has something to do
    '{"looks": "like json", "but": "is a body"}',
]


@pytest.mark.django_db(transaction=True)
def test_a_deflate_socket_and_a_plain_socket_read_identical_messages_in_order_live_and_after_a_resume(
    server_factory: Any,
) -> None:
    server = server_factory(env={"RATE_LIMITS": "off", "WS_COMPRESSION": "on"})  # permessage-deflate accepted
    room = prepare_room(3)
    url = room.ws_url(server.http_url)

    async def main() -> None:
        deflated = await open_reader(url, room.tokens[0], deflate=True)
        plain = await open_reader(url, room.tokens[1], deflate=False)
        third = await open_reader(url, room.tokens[2], deflate=True)
        assert deflated.socket is not None and deflated.socket.deflate is not None
        assert plain.socket is not None and plain.socket.deflate is None
        for n, body in enumerate(BODIES * 2):
            send((deflated, plain, third)[n % 3], body)
        expected = len(BODIES) * 2
        await wait_for(lambda: len(deflated.seqs()) == len(plain.seqs()) == expected, what="every live message")
        assert deflated.of_type("message") == plain.of_type("message")
        assert deflated.seqs() == sorted(set(deflated.seqs()))
        # The deflate socket really read compressed frames: the identity above is not two plain streams.
        assert deflated.socket.compressed_messages >= expected
        assert plain.socket.compressed_messages == 0
        resume_after = deflated.seqs()[3]
        last_live = deflated.seqs()[-1]
        await asyncio.gather(deflated.socket.close(), plain.socket.close())

        # While both are away, the room goes on; then both come back after the same seq.
        for body in BODIES:
            send(third, body)
        await wait_for(lambda: len(third.seqs()) == expected + len(BODIES), what="the messages sent meanwhile")
        last_seq = third.seqs()[-1]
        deflated = await open_reader(url, room.tokens[0], deflate=True, after_seq=resume_after)
        plain = await open_reader(url, room.tokens[1], deflate=False, after_seq=resume_after)
        await wait_for(lambda: deflated.of_type("synced") and plain.of_type("synced"), what="synced")
        send(third, "after the resume")
        await wait_for(lambda: len(third.seqs()) == expected + len(BODIES) + 1, what="the message after the resume")
        await wait_for(lambda: deflated.seqs()[-1:] == plain.seqs()[-1:] == third.seqs()[-1:], what="live again")
        assert deflated.of_type("message") == plain.of_type("message")
        assert deflated.of_type("synced") == plain.of_type("synced")
        assert json.loads(deflated.of_type("synced")[0])["last_seq"] >= last_seq
        seqs = deflated.seqs()
        assert seqs == sorted(set(seqs)) and seqs[0] > resume_after
        assert {s for s in third.seqs() if s > resume_after} <= set(seqs)  # nothing missed across the gap
        assert last_live < last_seq < seqs[-1]
        assert deflated.socket is not None and deflated.socket.deflate is not None
        assert deflated.socket.compressed_messages == len(deflated.of_type("message")) + 2  # + pong and synced
        for reader in (deflated, plain, third):
            assert reader.socket is not None
            await reader.socket.close()

    try:
        asyncio.run(main())
    finally:
        drop_room(room.room_id)


@pytest.mark.django_db(transaction=True)
def test_served_app_by_default_serves_a_deflate_offering_socket_uncompressed_as_the_server_command_does() -> None:
    room = prepare_room(2)
    env = {"DATABASE_URL": current_database_url(), "TESTING": "1", "DEBUG": "1"}
    served = {deflate: ServedApp("chattalk", free_port(), deflate=deflate, env=env) for deflate in (None, True)}
    assert served[None].command()[0].endswith("scripts/serve")  # the server command, with its default (declined)
    assert served[True].server_env()["WS_COMPRESSION"] == "on"

    async def chat(app: ServedApp) -> tuple[bool, list[bytes], int]:
        url = room.ws_url(app.url)
        offering = await open_reader(url, room.tokens[0], deflate=True)
        other = await open_reader(url, room.tokens[1], deflate=True)
        send(other, "does compression matter?")
        await wait_for(lambda: offering.seqs() and other.seqs(), what="the message")
        assert offering.socket is not None
        result = (offering.socket.deflate is not None, offering.of_type("message"), offering.socket.compressed_messages)
        await asyncio.gather(offering.socket.close(), other.socket.close())  # type: ignore[union-attr]
        return result

    try:
        outcomes = {}
        for deflate, app in served.items():
            app.start()
            try:
                outcomes[deflate] = asyncio.run(chat(app))
            finally:
                app.stop()
    finally:
        drop_room(room.room_id)
    negotiated, messages, compressed = outcomes[None]
    assert not negotiated and compressed == 0
    assert [json.loads(m)["message"]["body"] for m in messages] == ["does compression matter?"]
    negotiated, messages, compressed = outcomes[True]
    assert negotiated and compressed > 0
    assert [json.loads(m)["message"]["body"] for m in messages] == ["does compression matter?"]


@pytest.mark.django_db(transaction=True)
def test_with_compression_declined_offering_and_plain_sockets_read_the_same_frames_in_order_written_once(
    server_factory: Any,
) -> None:
    """The server's default: frames go to each transport as bytes encoded once per message (realtime.wire)."""
    server = server_factory(env={"RATE_LIMITS": "off"})  # WS_COMPRESSION unset: declined
    room = prepare_room(3)
    url = room.ws_url(server.http_url)

    async def main() -> None:
        offering = await open_reader(url, room.tokens[0], deflate=True)
        plain = await open_reader(url, room.tokens[1], deflate=False)
        third = await open_reader(url, room.tokens[2], deflate=True)
        for n, body in enumerate(BODIES * 2):
            send((offering, plain, third)[n % 3], body)
        expected = len(BODIES) * 2
        readers = (offering, plain, third)
        await wait_for(lambda: all(len(r.seqs()) == expected for r in readers), what="every live message")
        assert offering.of_type("message") == plain.of_type("message") == third.of_type("message")
        assert sorted(json.loads(m)["message"]["body"] for m in plain.of_type("message")) == sorted(BODIES * 2)
        assert plain.seqs() == sorted(set(plain.seqs()))
        for reader in readers:
            assert reader.socket is not None and reader.socket.deflate is None
            assert reader.socket.compressed_messages == 0
        # A socket that resumes gets the replay, then live frames, in order and the same as the others'.
        resume_after = plain.seqs()[2]
        await plain.socket.close()  # type: ignore[union-attr]
        plain = await open_reader(url, room.tokens[1], deflate=False, after_seq=resume_after)
        await wait_for(lambda: plain.of_type("synced"), what="synced")
        send(third, "after the resume")
        await wait_for(lambda: len(offering.seqs()) == expected + 1, what="the message after the resume")
        await wait_for(lambda: plain.seqs()[-1:] == offering.seqs()[-1:], what="live again")
        assert plain.of_type("message") == [m for m in offering.of_type("message") if json.loads(m)["message"]["seq"] > resume_after]
        for reader in (offering, plain, third):
            assert reader.socket is not None
            await reader.socket.close()

    try:
        asyncio.run(main())
    finally:
        drop_room(room.room_id)
