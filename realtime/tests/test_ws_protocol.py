"""The server's socket protocol (realtime.ws_protocol): uvicorn's wsproto protocol keeping less per socket.

Driven in-process with a stand-in transport, so the same bytes go through uvicorn's code and ours.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tracemalloc
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
from uvicorn.server import ServerState

from realtime.ws_protocol import HANDSHAKE_DONE, CompactWSProtocol, Inbox, WritableFlag

HANDSHAKE = (
    b"GET /ws/rooms/1/?access_token=abc HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Origin: http://127.0.0.1:8000\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)


def client_text_frame(text: str) -> bytes:
    """One masked text frame, as a client sends it (payload under 126 bytes)."""
    payload = text.encode()
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class StandInTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts, then echoes every text message: an idle socket waits in receive(), as ours do."""
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message["text"]})


def open_socket(protocol_class: type[WSProtocol]) -> tuple[WSProtocol, StandInTransport]:
    config = Config(app=echo_app, ws=protocol_class, ws_per_message_deflate=False, lifespan="off", log_config=None)
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = StandInTransport()
    protocol.connection_made(transport)
    protocol.data_received(HANDSHAKE)
    return protocol, transport


def in_a_loop(scenario: Any) -> Any:
    """A test that runs `scenario` in a fresh event loop (the suite has no async test plugin)."""

    def test() -> None:
        asyncio.run(scenario())

    test.__name__, test.__doc__ = scenario.__name__, scenario.__doc__
    return test


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@in_a_loop
async def test_an_accepted_socket_keeps_no_handshake_state_and_still_echoes():
    protocol, transport = open_socket(CompactWSProtocol)
    await settle()
    assert bytes(transport.written).startswith(b"HTTP/1.1 101 ")
    assert b"permessage-deflate" not in bytes(transport.written)  # declined, as scripts/serve does by default
    assert protocol.conn.handshake is HANDSHAKE_DONE  # wsproto's H11Handshake (h11, request headers) is gone
    assert isinstance(protocol.queue, Inbox) and protocol.queue.empty()
    transport.written.clear()

    protocol.data_received(client_text_frame('{"type":"ping"}') + client_text_frame("second"))
    await settle()
    assert bytes(transport.written) == b'\x81\x0f{"type":"ping"}' + b"\x81\x06second"

    protocol.connection_lost(None)
    await settle()
    assert not protocol.tasks  # the app saw the disconnect and returned


@in_a_loop
async def test_a_refused_socket_keeps_the_real_handshake_for_its_403():
    async def refuse(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 4403})

    config = Config(app=refuse, ws=CompactWSProtocol, lifespan="off", log_config=None)
    protocol = CompactWSProtocol(config=config, server_state=ServerState(), app_state={})
    transport = StandInTransport()
    protocol.connection_made(transport)
    protocol.data_received(HANDSHAKE)
    await settle()
    assert bytes(transport.written).startswith(b"HTTP/1.1 403 ")
    assert protocol.conn.handshake is not HANDSHAKE_DONE
    assert transport.closed


@in_a_loop
async def test_an_open_socket_costs_at_least_3_kib_less_than_with_uvicorns_own_protocol():
    """Traced Python memory per accepted, idle socket (the app waiting in receive()), both classes measured
    the same way in one process; the margin is generous against allocator noise (the saving is the
    asyncio.Queue's three deques, the Event's deque and the h11 handshake: about 6 KiB)."""

    async def per_socket(protocol_class: type[WSProtocol], count: int = 200) -> float:
        kept: list[Any] = []
        gc.collect()
        before = tracemalloc.take_snapshot()
        for _ in range(count):
            kept.append(open_socket(protocol_class))
        await settle()
        gc.collect()
        after = tracemalloc.take_snapshot()
        size = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        for protocol, _ in kept:
            protocol.connection_lost(None)
        await settle()
        return size / count

    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    try:
        await per_socket(CompactWSProtocol, 20)  # warm-up: first-use caches of both paths
        await per_socket(WSProtocol, 20)
        uvicorns = await per_socket(WSProtocol)
        ours = await per_socket(CompactWSProtocol)
    finally:
        if started_here:
            tracemalloc.stop()
    assert uvicorns - ours >= 3 * 1024, (uvicorns, ours)


@in_a_loop
async def test_inbox_gives_messages_in_order_and_wakes_a_waiting_reader():
    inbox = Inbox()
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert inbox.qsize() == 2 and not inbox.empty()
    assert await inbox.get() == 1
    assert await inbox.get() == 2
    assert inbox.empty()

    reader = asyncio.ensure_future(inbox.get())
    await settle()
    assert not reader.done()
    inbox.put_nowait(3)
    assert await reader == 3


@in_a_loop
async def test_inbox_refuses_a_second_reader_and_recovers_from_a_cancelled_one():
    inbox = Inbox()
    first = asyncio.ensure_future(inbox.get())
    await settle()
    with pytest.raises(RuntimeError):
        await inbox.get()
    first.cancel()
    await settle()
    inbox.put_nowait("after")
    assert await inbox.get() == "after"


@in_a_loop
async def test_writable_flag_lets_sends_through_when_set_and_holds_them_until_set_again():
    flag = WritableFlag()
    assert not flag.is_set()
    flag.set()
    assert await flag.wait() is True
    flag.clear()
    waiting = [asyncio.ensure_future(flag.wait()) for _ in range(2)]
    cancelled = asyncio.ensure_future(flag.wait())
    await settle()
    assert not any(w.done() for w in waiting)
    cancelled.cancel()
    await settle()
    flag.set()
    assert await asyncio.gather(*waiting) == [True, True]
    assert flag._waiters is None
