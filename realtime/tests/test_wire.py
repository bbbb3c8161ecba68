"""realtime.wire: a frame encoded once and written straight to uvicorn's transport must be the bytes wsproto
would have written, taken only when uvicorn's send would write at once, and never reorder a socket's output."""

from __future__ import annotations

import asyncio
import importlib
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from channels.sessions import InstanceSessionWrapper
from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
from wsproto.connection import ConnectionState
from wsproto.frame_protocol import FrameProtocol

from realtime import wire
from realtime.sockets import SocketBase, SocketState
from realtime.ws_protocol import CompactWSProtocol


def wsproto_server_frame(text: str) -> bytes:
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(text, fin=True))


@pytest.mark.parametrize(
    "text",
    ["", "x", "é" * 62 + "x", "y" * 125, "z" * 126, "ü" * 40000, "a" * 65535, "b" * 65536, '{"type":"message"} 你好 🙂'],
)
def test_a_text_frame_is_byte_for_byte_what_wsproto_writes_for_a_server(text: str) -> None:
    assert wire.text_frame(text) == wsproto_server_frame(text)


def test_one_text_is_encoded_once_for_every_socket_and_another_text_is_encoded_anew() -> None:
    text = "hello " * 10
    first = wire.frame_of(text)
    assert wire.frame_of(text) is first  # the same str: the same bytes object, not a second encoding
    other = "".join(["hello "] * 10)  # equal, not identical: encoded again, same bytes
    assert other is not text and wire.frame_of(other) == first
    assert wire.frame_of("ack") == wire.text_frame("ack")


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing


def fake_protocol() -> SimpleNamespace:
    """What write_now reads of uvicorn's WSProtocol, in the state of an open socket."""
    writable = asyncio.Event()
    writable.set()
    return SimpleNamespace(
        close_sent=False,
        disconnected=False,
        writable=writable,
        conn=SimpleNamespace(state=ConnectionState.OPEN),
        transport=FakeTransport(),
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda p: setattr(p, "close_sent", True),
        lambda p: setattr(p, "disconnected", True),
        lambda p: p.writable.clear(),  # flow control paused the transport: uvicorn's send would wait
        lambda p: setattr(p.conn, "state", ConnectionState.REMOTE_CLOSING),  # wsproto would refuse
        lambda p: setattr(p.transport, "closing", True),
    ],
)
def test_the_shortcut_writes_nothing_when_uvicorns_send_would_not_write_at_once(change: Any) -> None:
    protocol = fake_protocol()
    assert wire.write_now(protocol, "one")
    change(protocol)
    assert not wire.write_now(protocol, "two")
    assert protocol.transport.written == [wire.text_frame("one")]


def uvicorn_protocol(deflate: bool, handshake_complete: bool = True, kind: type = WSProtocol) -> WSProtocol:
    protocol = kind.__new__(kind)  # no connection: only what direct_protocol looks at
    protocol.config = SimpleNamespace(ws_per_message_deflate=deflate)
    protocol.handshake_complete = handshake_complete
    return protocol


def test_the_shortcut_applies_to_the_protocol_the_server_command_names() -> None:
    """scripts/serve names its own protocol in --ws (realtime.ws_protocol): the shortcut must know it, or the
    production server silently pays uvicorn's per-socket framing again."""
    serve = (Path(__file__).resolve().parents[2] / "scripts" / "serve").read_text()
    module_name, class_name = re.search(r"--ws ([\w.]+):(\w+)", serve).groups()  # type: ignore[union-attr]
    served = getattr(importlib.import_module(module_name), class_name)
    assert served is CompactWSProtocol
    declined = uvicorn_protocol(deflate=False, kind=served)
    assert wire.direct_protocol(declined.send) is declined
    assert wire.direct_protocol(uvicorn_protocol(deflate=True, kind=served).send) is None


def test_the_shortcut_applies_to_uvicorns_wsproto_send_with_deflate_declined_only() -> None:
    declined = uvicorn_protocol(deflate=False)
    assert wire.direct_protocol(declined.send) is declined
    wrapper = InstanceSessionWrapper.__new__(InstanceSessionWrapper)  # channels' session stack (cookie sockets)
    wrapper.real_send = declined.send
    assert wire.direct_protocol(wrapper.send) is declined
    assert wire.direct_protocol(uvicorn_protocol(deflate=True).send) is None  # each socket compresses its own
    assert wire.direct_protocol(uvicorn_protocol(deflate=False, handshake_complete=False).send) is None

    async def other_server_send(message: dict) -> None: ...

    assert wire.direct_protocol(other_server_send) is None
    wrapper.real_send = other_server_send
    assert wire.direct_protocol(wrapper.send) is None


def test_a_socket_writes_directly_while_it_can_and_keeps_its_order_across_a_paused_transport() -> None:
    async def scenario() -> None:
        protocol = fake_protocol()
        sent: list[str] = []

        async def ordinary_send(message: dict) -> None:  # uvicorn's send: waits while paused, then writes
            await protocol.writable.wait()
            sent.append(message["text"])
            protocol.transport.write(wire.text_frame(message["text"]))

        socket = SocketBase.__new__(SocketBase)
        socket.state = SocketState.LIVE
        socket._out = None
        socket._writing = False
        socket.base_send = ordinary_send
        socket._wire = protocol
        socket.push("1")
        assert protocol.transport.written == [wire.text_frame("1")] and sent == [], "written without the send"
        protocol.writable.clear()  # the peer stopped reading
        for text in ("2", "3", "4"):
            socket.push(text)
        await asyncio.sleep(0.01)
        assert len(protocol.transport.written) == 1 and socket._writing
        protocol.writable.set()
        await asyncio.sleep(0.01)
        assert sent == ["2", "3", "4"], "what waited went through the ordinary send, in order"
        assert not socket._writing and socket._out is None
        socket.push("5")  # drained: direct again
        assert sent == ["2", "3", "4"]
        assert protocol.transport.written == [wire.text_frame(t) for t in "12345"]

    asyncio.run(scenario())
