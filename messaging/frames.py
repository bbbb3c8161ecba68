"""WebSocket frame shapes of the chat socket, declared once for the consumer, the tests and the benchmark."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

# Close codes of the contract.
CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_IDLE = 4408
CLOSE_TOO_MANY = 4429
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013


class UserRef(TypedDict):
    id: int
    username: str
    nickname: str


class MessageData(TypedDict):
    id: int
    room: int
    seq: int
    client_id: str
    kind: Literal["TALK", "ENTER", "LEAVE"]
    sender: UserRef | None
    body: str
    created_at: str


# Client -> server
class SendFrame(TypedDict):
    type: Literal["send"]
    client_id: str
    body: str


class ResumeFrame(TypedDict):
    type: Literal["resume"]
    after_seq: int


class ReadFrame(TypedDict):
    type: Literal["read"]
    seq: int


CLIENT_FRAME_TYPES = frozenset({"send", "resume", "read", "typing", "ping"})


# Server -> client
def message_frame(message: MessageData | dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "message": message}


def ack_frame(client_id: str, seq: int, message_id: int) -> dict[str, Any]:
    return {"type": "ack", "client_id": client_id, "seq": seq, "id": message_id}


def synced_frame(last_seq: int) -> dict[str, Any]:
    return {"type": "synced", "last_seq": last_seq}


def read_frame(user: UserRef | dict[str, Any], seq: int) -> dict[str, Any]:
    return {"type": "read", "user": user, "seq": seq}


def typing_frame(user: UserRef | dict[str, Any]) -> dict[str, Any]:
    return {"type": "typing", "user": user}


def pong_frame() -> dict[str, Any]:
    return {"type": "pong"}


def error_frame(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "detail": detail, **extra}
