"""Frame shapes of the chat socket, declared once for the consumer, the services and the tests.

Close codes, error and pong frames are every socket's (realtime.frames).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from accounts.models import PublicUser


class MessageData(TypedDict):
    id: int
    room: int
    seq: int
    client_id: str
    kind: Literal["TALK", "ENTER", "LEAVE"]
    sender: PublicUser | None
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


# Server -> client
def message_frame(message: MessageData | dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "message": message}


def ack_frame(client_id: str, seq: int, message_id: int) -> dict[str, Any]:
    return {"type": "ack", "client_id": client_id, "seq": seq, "id": message_id}


def synced_frame(last_seq: int) -> dict[str, Any]:
    return {"type": "synced", "last_seq": last_seq}


def read_frame(user: PublicUser | dict[str, Any], seq: int) -> dict[str, Any]:
    return {"type": "read", "user": user, "seq": seq}


def typing_frame(user: PublicUser | dict[str, Any]) -> dict[str, Any]:
    return {"type": "typing", "user": user}


