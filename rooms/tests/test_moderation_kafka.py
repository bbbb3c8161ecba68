"""Moderation events reach Kafka on chattalk.memberships, once each, in the room's seq order (issue 18)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from events.consumer import consume_events
from events.models import OutboxEvent
from events.relay import Relay
from events.topics import MEMBERSHIPS
from rooms.services import ban_member, create_room, join_room, kick_member, set_role, transfer_ownership, unban_member

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

MODERATION = ("member.kicked", "member.banned", "member.unbanned", "role.changed")


@pytest.fixture
def topic_prefix(settings: Any) -> Iterator[str]:
    prefix = f"{settings.KAFKA_TOPIC_PREFIX}t{uuid.uuid4().hex[:10]}."
    settings.KAFKA_TOPIC_PREFIX = prefix
    yield prefix


def test_moderation_events_arrive_on_the_memberships_topic_in_seq_order(topic_prefix: str, make_user: Any) -> None:
    owner, mod, a, b = make_user(), make_user(), make_user(), make_user()
    room = create_room(owner=owner, title="Kafka town", max_personnel=10)
    for user in (mod, a, b):
        join_room(room_id=room.pk, user=user)
    set_role(room_id=room.pk, user_id=mod.pk, actor=owner, role="moderator")
    kick_member(room_id=room.pk, user_id=a.pk, actor=mod)
    ban_member(room_id=room.pk, user_id=b.pk, actor=mod)
    unban_member(room_id=room.pk, user_id=b.pk, actor=owner)
    transfer_ownership(room_id=room.pk, user_id=mod.pk, actor=owner)
    expected = list(
        OutboxEvent.objects.filter(room_id=room.pk, event_type__in=MODERATION).order_by("id").values_list("event_type", flat=True)
    )
    assert expected == [
        "role.changed", "member.kicked", "member.banned", "member.unbanned", "role.changed", "role.changed"
    ]
    total = OutboxEvent.objects.filter(room_id=room.pk).count()
    assert Relay(batch_size=50).run(once=True) == total

    arrived: list[Any] = []
    result = consume_events(
        group=None,
        timeout=20.0,
        accept=lambda envelope: envelope["room_id"] == room.pk and envelope["type"] in MODERATION,
        on_event=arrived.append,
        should_stop=lambda: len(arrived) >= len(expected),
    )
    assert result.duplicates == 0
    events = [e for e in result.events]
    assert [e.envelope["type"] for e in events] == expected
    assert all(e.topic.endswith(MEMBERSHIPS) for e in events)
    seqs = [e.envelope["data"]["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    kicked = events[1].envelope["data"]
    assert kicked["user"]["id"] == a.pk and kicked["by"]["id"] == mod.pk
    assert [e.envelope["data"].get("role") for e in events if e.envelope["type"] == "role.changed"] == [
        "moderator", "owner", "moderator"
    ]
