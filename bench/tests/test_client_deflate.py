"""The bench client's permessage-deflate, as a browser does it: offered by default, and server frames inflated
with the connection's own decompressor as negotiated. The server side here is frames built with zlib by hand
(RFC 7692: a message is deflated, sync-flushed, and loses the flush's last four bytes 00 00 ff ff)."""

from __future__ import annotations

import asyncio
import random
import struct
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from bench.client import DEFLATE_OFFER, WebSocketClient

CONTINUATION, TEXT, CLOSE, PING, PONG = 0x0, 0x1, 0x8, 0x9, 0xA


class RecordingTransport:
    """Stands in for the socket: keeps what the client writes, and whether it closed."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def server_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """An unmasked server frame."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        return head + bytes([n]) + payload
    if n < 1 << 16:
        return head + bytes([126]) + struct.pack("!H", n) + payload
    return head + bytes([127]) + struct.pack("!Q", n) + payload


def deflate_message(compressor: Any, text: bytes) -> bytes:
    """One message as a permessage-deflate sender writes it."""
    data = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def response(extensions: str | None) -> bytes:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    if extensions is not None:
        head += f"Sec-WebSocket-Extensions: {extensions}\r\n".encode()
    return head + b"\r\n"


def client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, unmasked payload) of every frame the client wrote after its request."""
    data = data[data.index(b"\r\n\r\n") + 4 :]
    frames = []
    while data:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        mask, payload = data[2:6], data[6 : 6 + length]
        frames.append((opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))))
        data = data[6 + length :]
    return frames


def run_client(
    stream: Callable[[], bytes] | bytes, *, offer_deflate: bool = True, piece: int = 5
) -> tuple[WebSocketClient, RecordingTransport, list[bytes]]:
    """Feed `stream` to a client in `piece`-byte slices, as TCP may deliver it; what did it make of it?"""

    async def main() -> tuple[WebSocketClient, RecordingTransport, list[bytes]]:
        received: list[bytes] = []
        client = WebSocketClient("127.0.0.1", 1, "/ws/rooms/1/", received.append, offer_deflate=offer_deflate)
        transport = RecordingTransport()
        client.connection_made(transport)  # type: ignore[arg-type]
        data = stream() if callable(stream) else stream
        for start in range(0, len(data), piece):
            client.data_received(data[start : start + piece])
        return client, transport, received

    return asyncio.run(main())


MESSAGES = [b'{"type":"message","message":{"seq":%d,"body":"hello room, hello room, hello"}}' % n for n in range(1, 6)]


def test_the_client_offers_permessage_deflate_exactly_as_chromium_does_by_default() -> None:
    _, transport, _ = run_client(b"")
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" in transport.written
    assert DEFLATE_OFFER == "permessage-deflate; client_max_window_bits"


def test_compressed_messages_inflate_with_the_window_carried_across_messages() -> None:
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    payloads = [deflate_message(compressor, text) for text in MESSAGES]
    # Context takeover: the later messages refer back to the earlier ones, so alone they would not inflate.
    assert len(payloads[1]) < len(payloads[0]) / 2
    with pytest.raises(zlib.error):
        zlib.decompressobj(-15).decompress(payloads[1] + b"\x00\x00\xff\xff")

    stream = response("permessage-deflate; client_max_window_bits=15")
    stream += b"".join(server_frame(TEXT, p, rsv1=True) for p in payloads)
    client, transport, received = run_client(stream)
    assert received == MESSAGES
    assert client.deflate is not None and not client.deflate.server_no_context_takeover
    assert client.compressed_messages == len(MESSAGES)
    assert client.protocol_error is None and not transport.closed


def test_a_fragmented_compressed_message_is_inflated_whole_with_a_ping_between_its_fragments() -> None:
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    first = deflate_message(compressor, MESSAGES[0])
    big = b'{"type":"message","message":{"body":"' + bytes(range(32, 127)) * 700 + b'"}}'
    payload = deflate_message(compressor, big)
    third = len(payload) // 3
    stream = response("permessage-deflate")
    stream += server_frame(TEXT, first, rsv1=True)
    # Only the first frame of a message carries RSV1; continuations do not (RFC 7692 section 6.1).
    stream += server_frame(TEXT, payload[:third], fin=False, rsv1=True)
    stream += server_frame(PING, b"still there?")
    stream += server_frame(CONTINUATION, payload[third : 2 * third], fin=False)
    stream += server_frame(CONTINUATION, payload[2 * third :])
    stream += server_frame(TEXT, b'{"type":"pong"}')  # an uncompressed message on the same socket
    client, transport, received = run_client(stream, piece=97)
    assert received == [MESSAGES[0], big, b'{"type":"pong"}']
    assert client.compressed_messages == 2
    assert (PONG, b"still there?") in client_frames(bytes(transport.written))


def test_server_no_context_takeover_inflates_each_message_on_its_own_and_keeps_no_window() -> None:
    payloads = []
    for text in MESSAGES:
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -10)  # a fresh one per message
        payloads.append(deflate_message(compressor, text))
    stream = response("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
    stream += b"".join(server_frame(TEXT, p, rsv1=True) for p in payloads)
    client, _, received = run_client(stream)
    assert received == MESSAGES
    assert client.deflate is not None
    assert client.deflate.server_no_context_takeover and client.deflate.server_max_window_bits == 10
    assert client._decompressor is None  # no 32 KiB window kept per socket, as the server promised none is needed


def test_the_negotiated_server_window_is_honoured_a_message_needing_a_larger_one_fails_the_connection() -> None:
    text = random.Random(7).randbytes(700)  # no repeats within itself: the second copy refers 700 bytes back
    extensions = "permessage-deflate; server_max_window_bits=9"  # the server promised a 512-byte window

    def stream(window_bits: int) -> bytes:
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)
        frames = [server_frame(TEXT, deflate_message(compressor, text), rsv1=True) for _ in range(2)]
        return response(extensions) + b"".join(frames) + server_frame(TEXT, b'{"type":"pong"}')

    _, _, received = run_client(stream(9))
    assert received == [text, text, b'{"type":"pong"}']

    for piece in (5, 100_000):  # the frames in many reads, or all in one
        client, transport, received = run_client(stream(15), piece=piece)  # the server breaks its word
        assert received == [text]  # and nothing after the message that failed the connection
        assert client.protocol_error is not None and "inflate" in client.protocol_error
        assert client_frames(bytes(transport.written))[-1] == (CLOSE, struct.pack("!H", 1007))
        assert transport.closed


def test_without_deflate_nothing_is_offered_plain_frames_work_and_rsv1_fails_the_connection() -> None:
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    stream = response(None) + server_frame(TEXT, MESSAGES[0]) + server_frame(TEXT, MESSAGES[1], fin=False)
    stream += server_frame(CONTINUATION, b"")
    stream += server_frame(TEXT, deflate_message(compressor, MESSAGES[2]), rsv1=True)
    stream += server_frame(TEXT, MESSAGES[3])
    client, transport, received = run_client(stream, offer_deflate=False)
    assert b"Sec-WebSocket-Extensions" not in transport.written
    assert client.deflate is None
    assert received == [MESSAGES[0], MESSAGES[1]]  # nothing after the frame it may not accept
    assert client.protocol_error is not None and "RSV1" in client.protocol_error
    assert client_frames(bytes(transport.written))[-1] == (CLOSE, struct.pack("!H", 1002))


def test_a_server_that_declines_deflate_is_spoken_to_plainly() -> None:
    client, _, received = run_client(response(None) + server_frame(TEXT, MESSAGES[0]))
    assert client.opened.done() and client.opened.exception() is None
    assert client.deflate is None
    assert received == [MESSAGES[0]]


@pytest.mark.parametrize(
    ("offer", "extensions"),
    [
        (False, "permessage-deflate"),  # accepted though never offered
        (True, "x-webkit-deflate-frame"),  # another extension
        (True, "permessage-deflate; server_max_window_bits=16"),  # a window zlib cannot have
        (True, "permessage-deflate; client_max_window_bits"),  # no value: only an offer may say that
        (True, "permessage-deflate, permessage-deflate"),  # two answers to one offer
    ],
)
def test_a_handshake_answer_the_client_cannot_honour_fails_the_connection(offer: bool, extensions: str) -> None:
    client, transport, _ = run_client(response(extensions), offer_deflate=offer)
    assert client.opened.done() and client.opened.exception() is not None
    assert transport.closed and not client.is_open
