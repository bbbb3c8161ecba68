"""A deleted body never reaches Kafka after its deletion: the outbox rows still waiting for the relay (the
message's edits, reactions, a reply quoting it) are rewritten in the deletion's transaction, so what the
relay delivers afterwards carries no trace of it. What Kafka held before the deletion stays there (the
consumers redact on `message.deleted`); this test shows that it was there, so the checks can see a body.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from events.consumer import consume_events
from events.models import OutboxEvent
from events.relay import Relay
from messaging.services import delete_message, edit_message, send_message, set_reaction

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def topic_prefix(settings: Any) -> Iterator[str]:
    """Fresh topics for this test on the shared broker."""
    prefix = f"{settings.KAFKA_TOPIC_PREFIX}t{uuid.uuid4().hex[:10]}."
    settings.KAFKA_TOPIC_PREFIX = prefix
    yield prefix


def room_events(room_id: int, expected: int) -> list[dict[str, Any]]:
    arrived: list[float] = []
    result = consume_events(
        group=None,
        timeout=30.0,
        accept=lambda envelope: envelope["room_id"] == room_id,
        on_event=lambda _event: arrived.append(time.monotonic()),
        should_stop=lambda: len(arrived) >= expected and time.monotonic() - arrived[expected - 1] >= 1.0,
    )
    assert result.duplicates == 0
    return [event.envelope for event in result.events]


def test_what_the_relay_delivers_after_a_deletion_carries_no_trace_of_the_deleted_body(topic_prefix, room_with_members):
    room, (owner, alice, bob) = room_with_members(3)
    early, edited = "EARLY-SECRET-5d1e", "EDITED-SECRET-c07a"
    target = send_message(room_id=room.pk, sender=alice, client_id="t1", body=f"{early} @{bob.username}").message
    Relay(batch_size=50).run(once=True)
    relayed_before = set(OutboxEvent.objects.filter(room_id=room.pk).values_list("event_id", flat=True))
    assert not OutboxEvent.objects.filter(room_id=room.pk, sent_at__isnull=True).exists()

    # Pending when the deletion comes: a reply quoting it, a reaction, an edit (each carries the body).
    reply = send_message(room_id=room.pk, sender=bob, client_id="r1", body="quoting it", reply_to=target["id"]).message
    set_reaction(room_id=room.pk, message_id=target["id"], actor=bob, emoji="eyes", on=True)
    set_reaction(room_id=room.pk, message_id=reply["id"], actor=alice, emoji="ok", on=True)  # carries the quote
    edit_message(room_id=room.pk, message_id=target["id"], actor=alice, body=f"{edited} @{bob.username}")
    pending = OutboxEvent.objects.filter(room_id=room.pk, sent_at__isnull=True)
    assert pending.count() == 4
    delete_message(room_id=room.pk, message_id=target["id"], actor=owner)  # the room's owner moderates
    assert not [
        p for p in pending.values_list("payload", flat=True) if early in json.dumps(p) or edited in json.dumps(p)
    ]
    Relay(batch_size=50).run(once=True)

    total = OutboxEvent.objects.filter(room_id=room.pk).count()
    envelopes = room_events(room.pk, expected=total)
    assert len(envelopes) == total
    before = [e for e in envelopes if uuid.UUID(e["event_id"]) in relayed_before]
    after = [e for e in envelopes if uuid.UUID(e["event_id"]) not in relayed_before]
    assert any(early in json.dumps(e) for e in before), "the body reached Kafka before its deletion"
    assert [e["type"] for e in after] == [
        "message.created",
        "reaction.added",
        "reaction.added",
        "message.edited",
        "message.deleted",
    ]
    leaks = [e for e in after if early in json.dumps(e) or edited in json.dumps(e)]
    assert leaks == []
    created, reaction, reaction_to_reply, edit, deletion = (e["data"] for e in after)
    for quote in (created["reply_to"], reaction_to_reply["message"]["reply_to"]):
        assert (quote["id"], quote["excerpt"], quote["deleted"]) == (target["id"], "", True)
    assert reaction_to_reply["message"]["body"] == "quoting it", "only the deleted message's content goes"
    for data in (reaction, edit, deletion):
        assert data["message"]["id"] == target["id"]
        assert (data["message"]["body"], data["message"]["reactions"], data["message"]["mentions"]) == ("", [], [])
    assert deletion["message"]["deleted_at"] is not None and deletion["by"]["id"] == owner.pk
