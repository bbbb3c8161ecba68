"""One frame's bytes for every socket: a message is encoded into a WebSocket frame once, not once per socket.

What it adapts: the project's server command (scripts/serve) runs uvicorn with `--ws wsproto`. Its ASGI send
(`uvicorn.protocols.websockets.wsproto_impl.WSProtocol.send`) builds a wsproto event for every socket, has
wsproto encode the text and frame it, then writes the bytes to the socket's transport. A server's frames are
not masked (RFC 6455 5.1), so with no extension negotiated a text frame's bytes depend on the text alone:
`text_frame` makes those bytes once per message (the hub hands every socket the same str object) and
`write_now` gives them to each socket's transport, as uvicorn's send would have, without the ASGI
message dict, the send's coroutine and wsproto's per-frame objects.

When it applies (`direct_protocol`, decided once per socket when it is accepted):
- the send is uvicorn's wsproto send (possibly behind channels' session wrapper, which passes websocket
  messages through untouched); any other server (daphne, websockets, the test communicator) keeps the
  ordinary send;
- the server declines permessage-deflate (WS_COMPRESSION off, the default): with deflate on, each socket
  compresses with its own state, so its frames differ and the ordinary send is used.
Per write it only takes the shortcut while uvicorn's send would write at once: the handshake done, no close
sent or received (wsproto's connection OPEN), the transport not closing and not paused by flow control;
otherwise `write_now` returns False and the socket uses the ordinary send (which waits, raises or drops exactly as
uvicorn does). wsproto keeps no state for an unfragmented outgoing message, so bytes written around it leave
its connection as it would be after its own send. Tests: realtime/tests/test_wire.py (bytes identical to
wsproto's, the fallbacks) and bench/tests/test_deflate_sockets.py (real servers, deflate on and off).
"""

from __future__ import annotations

import struct
from typing import Any

from channels.sessions import InstanceSessionWrapper

try:  # the server command's protocol; without uvicorn (or another version's layout) nothing is adapted
    from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
    from wsproto.connection import ConnectionState

    from .ws_protocol import CompactWSProtocol

    # The sends whose writes the shortcut may stand in for: uvicorn's own, and scripts/serve's protocol's
    # (uvicorn's, then only dropping the finished handshake).
    UVICORN_SENDS: frozenset[Any] = frozenset({WSProtocol.send, CompactWSProtocol.send})
except ImportError:  # pragma: no cover - uvicorn and wsproto are dependencies
    WSProtocol = None  # type: ignore[assignment,misc]
    ConnectionState = None  # type: ignore[assignment,misc]
    UVICORN_SENDS = frozenset()

_FIN_TEXT = 0x81  # FIN, no RSV bits (no extension), opcode 1 (text)


def text_frame(text: str) -> bytes:
    """The unmasked, unfragmented, uncompressed text frame of `text`, as wsproto encodes it for a server."""
    payload = text.encode("utf-8")
    length = len(payload)
    if length <= 125:
        return bytes((_FIN_TEXT, length)) + payload
    if length <= 0xFFFF:
        return struct.pack("!BBH", _FIN_TEXT, 126, length) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, length) + payload


class _LastFrame:
    """The last text encoded and its frame: a fan-out hands every socket the same str, so one encoding serves
    all of them. Compared by identity; a different text (an ack between two fan-outs) is simply encoded."""

    text: str | None = None
    frame: bytes = b""


_last = _LastFrame()


def frame_of(text: str) -> bytes:
    if text is not _last.text:
        _last.frame = text_frame(text)
        _last.text = text
    return _last.frame


def write_now(protocol: Any, text: str) -> bool:
    """Hand `text`'s frame to the socket's transport if uvicorn's send would write it at once; True if written.
    False: nothing was written, the ordinary send must take this frame (and it waits, raises or drops as
    uvicorn does)."""
    p = protocol
    if (
        p.close_sent
        or p.disconnected
        or not p.writable.is_set()
        or p.conn.state is not ConnectionState.OPEN
        or p.transport.is_closing()
    ):
        return False
    p.transport.write(frame_of(text))
    return True


def direct_protocol(send: Any) -> Any | None:
    """The uvicorn protocol to write to for a socket whose ASGI send is `send` (call it once the socket was
    accepted), or None where the shortcut does not apply."""
    if WSProtocol is None:
        return None
    owner = getattr(send, "__self__", None)
    if isinstance(owner, InstanceSessionWrapper):
        send = owner.real_send  # channels' session wrapper passes websocket messages through untouched
        owner = getattr(send, "__self__", None)
    if not isinstance(owner, WSProtocol) or getattr(send, "__func__", None) not in UVICORN_SENDS:
        return None
    if owner.config.ws_per_message_deflate or not owner.handshake_complete:
        return None
    return owner
