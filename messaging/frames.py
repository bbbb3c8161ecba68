"""Frame shapes of the chat socket, declared once for the consumer, the services and the tests.

Close codes, error and pong frames are every socket's (realtime.frames).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from accounts.models import PublicUser


class ReplyData(TypedDict):
    id: int
    seq: int
    sender: PublicUser | None
    excerpt: str
    deleted: bool


class ReactionData(TypedDict):
    emoji: str
    count: int
    users: list[int]


class MessageData(TypedDict):
    id: int
    room: int
    seq: int
    client_id: str
    kind: Literal["TALK", "ENTER", "LEAVE"]
    sender: PublicUser | None
    body: str
    created_at: str
    edited_at: str | None
    deleted_at: str | None
    reply_to: ReplyData | None
    reactions: list[ReactionData]
    mentions: list[int]
    attachments: list[dict[str, Any]]


# Client -> server
class SendFrame(TypedDict, total=False):
    type: Literal["send"]
    client_id: str
    body: str
    reply_to: int | None
    attachments: list[int]


class EditFrame(TypedDict):
    type: Literal["edit"]
    message_id: int
    body: str


class DeleteFrame(TypedDict):
    type: Literal["delete"]
    message_id: int


class ReactFrame(TypedDict):
    type: Literal["react"]
    message_id: int
    emoji: str
    on: bool


class ResumeFrame(TypedDict):
    type: Literal["resume"]
    after_seq: int


class ReadFrame(TypedDict):
    type: Literal["read"]
    seq: int


# Server -> client
def message_frame(message: MessageData | dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "message": message}


def message_updated_frame(seq: int, message: MessageData | dict[str, Any]) -> dict[str, Any]:
    """A change (edit, delete, reaction) with the seq it took and the message after it."""
    return {"type": "message.updated", "seq": seq, "message": message}


def mention_frame(room_id: int, message: MessageData | dict[str, Any]) -> dict[str, Any]:
    return {"type": "mention", "room_id": room_id, "message": message}


def ack_frame(client_id: str, seq: int, message_id: int) -> dict[str, Any]:
    return {"type": "ack", "client_id": client_id, "seq": seq, "id": message_id}


def synced_frame(last_seq: int) -> dict[str, Any]:
    return {"type": "synced", "last_seq": last_seq}


def read_frame(user: PublicUser | dict[str, Any], seq: int) -> dict[str, Any]:
    return {"type": "read", "user": user, "seq": seq}


def typing_frame(user: PublicUser | dict[str, Any]) -> dict[str, Any]:
    return {"type": "typing", "user": user}


def room_activity_frame(room_id: int, last_seq: int, unread: int, mentions: int, member: bool = True) -> dict[str, Any]:
    """The user socket's (/ws/me/) state of one room for its user; `member` false once they left it."""
    return {
        "type": "room.activity",
        "room_id": room_id,
        "last_seq": last_seq,
        "unread": unread,
        "mentions": mentions,
        "member": member,
    }
