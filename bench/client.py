"""A lean WebSocket and HTTP/1.1 client for load tests: thousands of sockets in one asyncio process.

Why not the `websockets` library: on a 2-core machine the load generator shares the CPU with the server under
test, and every microsecond the client spends per received frame is taken from the server. This client parses
server frames in `data_received` with no per-frame task, future or copy, and hands the raw text to one
callback. It speaks just enough of RFC 6455 for a benchmark: text frames (fragmented too), ping/pong, close
codes; it masks what it sends. Only loopback targets are accepted, and the test cluster's own addresses
(scripts/netcluster's bridge, NETCLUSTER_SUBNET, 10.231.0.0/24 by default).

It offers permessage-deflate (RFC 7692) by default, with the very header Chromium sends, because every
browser does and a server that accepts it pays per socket for it (a deflate window and a compression per
frame per socket): a benchmark of clients that offer nothing would not describe real users. When the server
accepts, server frames with RSV1 set are inflated with this connection's own decompressor (as a browser
keeps one per socket), honouring server_no_context_takeover and server_max_window_bits. What the client
sends stays uncompressed, which RFC 7692 allows; `deflate=False` offers no extension at all.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
# The addresses scripts/netcluster creates (its bridge and namespaces): a test cluster on this machine.
CLUSTER_SUBNET_PREFIX = os.environ.get("NETCLUSTER_SUBNET", "10.231.0") + "."

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
RSV1, RSV2_RSV3 = 0x40, 0x30

# Exactly what Chromium offers on every WebSocket.
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # the end of a sync flush, which a sender strips from each message


class HandshakeError(ConnectionError):
    """The server answered the upgrade with something other than 101, or accepted an extension we did not offer."""


class DeflateParameters:
    """What the server's Sec-WebSocket-Extensions answer made of our permessage-deflate offer.

    Only the server-to-client direction matters here (this client does not compress): whether the server
    resets its window after each message, and the window size it compresses with.
    """

    __slots__ = ("server_no_context_takeover", "server_max_window_bits", "client_no_context_takeover")

    def __init__(self) -> None:
        self.server_no_context_takeover = False
        self.server_max_window_bits = 15
        self.client_no_context_takeover = False

    @classmethod
    def from_response(cls, header_values: list[str], offered: bool) -> DeflateParameters | None:
        """The accepted permessage-deflate parameters, None when the server accepted no extension.

        A browser fails the connection when the server accepts an extension that was not offered or answers
        with a parameter it cannot honour, so this raises HandshakeError in those cases.
        """
        extensions = [item.strip() for value in header_values for item in value.split(",") if item.strip()]
        if not extensions:
            return None
        if len(extensions) > 1 or not offered:
            raise HandshakeError(f"the server accepted extensions that were not offered: {extensions}")
        name, *params = [part.strip() for part in extensions[0].split(";")]
        if name.lower() != "permessage-deflate":
            raise HandshakeError(f"the server accepted an extension that was not offered: {name}")
        accepted = cls()
        seen: set[str] = set()
        for param in params:
            key, _, value = (piece.strip().strip('"') for piece in param.partition("="))
            key = key.lower()
            if key in seen:
                raise HandshakeError(f"permessage-deflate parameter repeated: {key}")
            seen.add(key)
            if key == "server_no_context_takeover" and not value:
                accepted.server_no_context_takeover = True
            elif key == "client_no_context_takeover" and not value:
                accepted.client_no_context_takeover = True
            elif key == "server_max_window_bits" and value.isdigit() and 8 <= int(value) <= 15:
                accepted.server_max_window_bits = int(value)
            elif key == "client_max_window_bits" and value.isdigit() and 8 <= int(value) <= 15:
                pass  # bounds what this client would compress with; it sends uncompressed
            else:
                raise HandshakeError(f"permessage-deflate parameter not understood: {param!r}")
        return accepted

    def new_decompressor(self) -> zlib._Decompress:
        # zlib deflates with a 9-bit window when asked for 8, so a zlib server that agreed to 8 writes 9-bit
        # streams; a 9-bit window reads those and every true 8-bit stream.
        return zlib.decompressobj(-max(9, self.server_max_window_bits))


def require_loopback(url: str) -> tuple[str, int, str]:
    """(host, port, path+query) of a ws:// or http:// URL on this machine (loopback, or the test cluster's
    namespaces); anything else is refused."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in LOOPBACK_HOSTS and not host.startswith(("127.", CLUSTER_SUBNET_PREFIX)):
        raise ValueError(f"benchmarks only target this machine (127.0.0.0/8, ::1, the test cluster), not {host!r}")
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return host, port, path


def mask_payload(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, done on one big integer rather than byte by byte."""
    n = len(payload)
    if n == 0:
        return payload
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (FIN set)."""
    n = len(payload)
    head = bytearray([0x80 | opcode])
    if n < 126:
        head.append(0x80 | n)
    elif n < 1 << 16:
        head.append(0x80 | 126)
        head += struct.pack("!H", n)
    else:
        head.append(0x80 | 127)
        head += struct.pack("!Q", n)
    mask = os.urandom(4)
    return bytes(head) + mask + mask_payload(payload, mask)


class WebSocketClient(asyncio.Protocol):
    """One client socket. `on_text(data: bytes)` gets every text message (inflated when it came compressed);
    `closed` resolves with the close code; `deflate` says whether permessage-deflate was negotiated."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        on_text: Callable[[bytes], None] | None = None,
        *,
        offer_deflate: bool = True,
        headers: dict[str, str] | None = None,
    ):
        self.host, self.port, self.path = host, port, path
        self.headers = headers or {}
        self.on_text = on_text or (lambda data: None)
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragments_opcode = OP_TEXT
        self._fragments_compressed = False
        self.offer_deflate = offer_deflate
        self.deflate: DeflateParameters | None = None
        self._decompressor: zlib._Decompress | None = None
        self.compressed_messages = 0  # messages that arrived with RSV1 set (proof that the server compressed)
        self.protocol_error: str | None = None
        self._key = base64.b64encode(os.urandom(16)).decode()
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()
        self.close_code: int | None = None
        self._handshaken = False

    # --- asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] - uvloop's transports are not asyncio subclasses
        extensions = f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n" if self.offer_deflate else ""
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self._key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{extensions}{extra}\r\n"
        )
        transport.write(request.encode("latin-1"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._handshaken:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status_line, *header_lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            del self._buffer[: end + 4]
            if " 101 " not in status_line + " ":
                self._fail(HandshakeError(status_line))
                return
            extensions = [
                value.strip()
                for name, _, value in (line.partition(":") for line in header_lines)
                if name.strip().lower() == "sec-websocket-extensions"
            ]
            try:
                self.deflate = DeflateParameters.from_response(extensions, self.offer_deflate)
            except HandshakeError as exc:
                self._fail(exc)
                return
            self._handshaken = True
            if not self.opened.done():
                self.opened.set_result(None)
        self._parse_frames()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("connection closed before the handshake"))
        if not self.closed.done():
            self.closed.set_result(self.close_code if self.close_code is not None else 1006)

    # --- frames -------------------------------------------------------------------------------------
    def _parse_frames(self) -> None:
        buf = self._buffer
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            masked = b1 & 0x80
            if masked:
                head += 4
            if size - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            if masked:
                payload = mask_payload(payload, bytes(buf[pos + head - 4 : pos + head]))
            pos += head + length
            if b0 & 0x70:
                self._check_rsv(b0)
            if self.protocol_error:
                return  # the connection failed: nothing after that point is read
            self._on_frame(b0 & 0x80, b0 & 0x0F, payload, b0 & RSV1)
        if pos:
            del buf[:pos]

    def _check_rsv(self, b0: int) -> None:
        """RSV1 only on the first frame of a data message, and only once deflate was negotiated; never RSV2/3."""
        opcode = b0 & 0x0F
        if b0 & RSV2_RSV3:
            self._protocol_failure("RSV2/RSV3 set: no extension that uses them was negotiated", 1002)
        elif self.deflate is None:
            self._protocol_failure("RSV1 set but permessage-deflate was not negotiated", 1002)
        elif opcode not in (OP_TEXT, OP_BINARY):
            self._protocol_failure(f"RSV1 set on a frame of opcode {opcode:#x}", 1002)

    def _on_frame(self, fin: int, opcode: int, payload: bytes, compressed: int = 0) -> None:
        if opcode in (OP_TEXT, OP_BINARY):
            if fin:
                if compressed:
                    payload = self._inflate(payload)
                    if self.protocol_error:
                        return
                if opcode == OP_TEXT:
                    self.on_text(payload)
            else:
                self._fragments = [payload]
                self._fragments_opcode = opcode
                self._fragments_compressed = bool(compressed)
        elif opcode == OP_CONT:
            self._fragments.append(payload)
            if fin:
                whole, self._fragments = b"".join(self._fragments), []
                if self._fragments_compressed:
                    whole = self._inflate(whole)
                    if self.protocol_error:
                        return
                if self._fragments_opcode == OP_TEXT:
                    self.on_text(whole)
        elif opcode == OP_PING:
            self._write(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self._write(OP_CLOSE, payload[:2])
            if self.transport is not None:
                self.transport.close()

    def _inflate(self, data: bytes) -> bytes:
        """One whole compressed message: the sender removed the sync flush's last four bytes; put them back."""
        assert self.deflate is not None
        self.compressed_messages += 1
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self.deflate.new_decompressor()
            if not self.deflate.server_no_context_takeover:
                self._decompressor = decompressor  # the window carries over to the next message
        try:
            return decompressor.decompress(data + DEFLATE_TAIL)
        except zlib.error as exc:
            self._protocol_failure(f"a compressed message did not inflate: {exc}", 1007)
            return b""

    def _protocol_failure(self, reason: str, code: int) -> None:
        """Fail the connection as a browser does: send a close with the code, drop the socket."""
        if self.protocol_error is None:
            self.protocol_error = reason
            self._write(OP_CLOSE, struct.pack("!H", code))
            if self.transport is not None:
                self.transport.close()

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(opcode, payload))

    def _fail(self, exc: BaseException) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
            self.opened.exception()  # retrieved: a failed connect is reported by connect(), not logged
            if self.transport is not None:
                self.transport.close()

    # --- public -------------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._handshaken and self.transport is not None and not self.transport.is_closing()

    def send_text(self, text: str) -> None:
        self._write(OP_TEXT, text.encode())

    def send_json(self, frame: dict[str, Any]) -> None:
        self.send_text(json.dumps(frame, separators=(",", ":")))

    async def close(self, code: int = 1000, timeout: float = 2.0) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self._write(OP_CLOSE, struct.pack("!H", code))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self.transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def connect(
    url: str,
    on_text: Callable[[bytes], None] | None = None,
    timeout: float = 30.0,
    *,
    deflate: bool = True,
    headers: dict[str, str] | None = None,
) -> WebSocketClient:
    """Open a socket to a loopback ws:// URL and wait for the 101; `deflate` offers permessage-deflate;
    `headers` go into the upgrade request (a page's socket sends its Cookie and Origin)."""
    host, port, path = require_loopback(url)
    loop = asyncio.get_running_loop()
    _, protocol = await asyncio.wait_for(
        loop.create_connection(
            lambda: WebSocketClient(host, port, path, on_text, offer_deflate=deflate, headers=headers),
            host.strip("[]"),
            port,
        ),
        timeout,
    )
    try:
        await asyncio.wait_for(asyncio.shield(protocol.opened), timeout)
    except BaseException:
        protocol.abort()
        raise
    return protocol


async def http_json(
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, Any]:
    """One HTTP/1.1 request with a JSON body on its own connection: (status, decoded JSON or raw text)."""
    payload = json.dumps(body).encode() if body is not None else None
    return await http_request(method, url, payload, "application/json", headers, timeout)


async def http_multipart(
    url: str,
    field: str,
    filename: str,
    content_type: str,
    data: bytes,
    headers: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> tuple[int, Any]:
    """POST one file as multipart/form-data, as a browser's FormData does: (status, decoded JSON or text)."""
    boundary = "----ChatTalkBench" + base64.b16encode(os.urandom(8)).decode()
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    payload = head + data + f"\r\n--{boundary}--\r\n".encode()
    return await http_request("POST", url, payload, f"multipart/form-data; boundary={boundary}", headers, timeout)


async def http_request(
    method: str,
    url: str,
    payload: bytes | None,
    content_type: str,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, Any]:
    """One HTTP/1.1 request on its own connection: (status, the body decoded as JSON, else as text)."""
    host, port, path = require_loopback(url)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close", "Accept: application/json"]
    if payload is not None:
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(payload)}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (payload or b"")

    async def exchange() -> tuple[int, Any]:
        reader, writer = await asyncio.open_connection(host.strip("[]"), port)
        try:
            writer.write(request)
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
        head, _, rest = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if b"transfer-encoding: chunked" in head.lower():
            rest = _dechunk(rest)
        try:
            return status, json.loads(rest) if rest else None
        except ValueError:
            return status, rest.decode("utf-8", "replace")

    return await asyncio.wait_for(exchange(), timeout)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)
