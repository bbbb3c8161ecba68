"""Kafka topics of the wire contract, one per kind of change."""

from __future__ import annotations

from django.conf import settings

MESSAGES = "chattalk.messages"
ROOMS = "chattalk.rooms"
MEMBERSHIPS = "chattalk.memberships"
PRESENCE = "chattalk.presence"
ALL_TOPICS = (MESSAGES, ROOMS, MEMBERSHIPS, PRESENCE)

TOPIC_BY_EVENT_PREFIX = {
    "message.": MESSAGES,
    "reaction.": MESSAGES,  # a reaction is a change of its message: same topic, same key, same order
    "room.": ROOMS,
    "member.": MEMBERSHIPS,
    "role.": MEMBERSHIPS,
    "presence.": PRESENCE,
}


def topic_for(event_type: str) -> str:
    for prefix, topic in TOPIC_BY_EVENT_PREFIX.items():
        if event_type.startswith(prefix):
            return topic
    raise ValueError(f"no topic for event type {event_type!r}")


def kafka_topic_name(topic: str) -> str:
    """The broker-side name: KAFKA_TOPIC_PREFIX lets tests and tenants share one cluster."""
    return f"{settings.KAFKA_TOPIC_PREFIX}{topic}"
