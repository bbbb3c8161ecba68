"""Frame shapes of the presence socket, declared once for the consumer and the tests."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from accounts.models import PublicUser


class ParticipantFrame(TypedDict):
    user: PublicUser
    connected: bool
    connections: int
    left_at: str | None
    last_seen_at: str | None
    member: bool


class SnapshotFrame(TypedDict):
    type: Literal["presence.snapshot"]
    participants: list[ParticipantFrame]


class ChangedFrame(TypedDict):
    type: Literal["presence.changed"]
    participant: ParticipantFrame


def changed_frame(participant: ParticipantFrame | dict[str, Any]) -> dict[str, Any]:
    return {"type": "presence.changed", "participant": participant}
