"""An example consumer of ChatTalk's event stream: what a downstream team's reader looks like.

Delivery is at least once, so a consumer dedupes by event_id. Used by `manage.py consume_events` and by tests.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from .kafka import consumer_config
from .topics import ALL_TOPICS, kafka_topic_name

ENVELOPE_FIELDS = ("event_id", "type", "version", "occurred_at", "room_id", "data")


@dataclass(frozen=True)
class ConsumedEvent:
    envelope: dict[str, Any]
    topic: str
    partition: int
    offset: int
    key: str | None
    received_at: float  # time.time() when this consumer read it


@dataclass
class ConsumeResult:
    events: list[ConsumedEvent] = field(default_factory=list)  # first copy of each event_id, in arrival order
    counts: Counter[str] = field(default_factory=Counter)  # by event type
    duplicates: int = 0
    malformed: int = 0
    ignored: int = 0  # well-formed but not accepted by the filter


def parse_envelope(value: bytes | None) -> dict[str, Any] | None:
    """The contract's envelope, or None when the value is not one."""
    try:
        envelope = json.loads(value or b"")
    except ValueError:
        return None
    if not isinstance(envelope, dict) or not all(name in envelope for name in ENVELOPE_FIELDS):
        return None
    return envelope


def consume_events(
    *,
    group: str | None,
    topics: Iterable[str] = ALL_TOPICS,
    max_events: int | None = None,
    timeout: float | None = None,
    accept: Callable[[dict[str, Any]], bool] | None = None,
    on_event: Callable[[ConsumedEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    config: dict[str, Any] | None = None,
) -> ConsumeResult:
    """Read events until max_events distinct accepted ones arrived, timeout seconds passed, or should_stop().

    group: a consumer group (committed offsets, rebalancing); None reads every partition from the beginning
    without a group (no join wait: handy for tests). Topics are contract names; KAFKA_TOPIC_PREFIX applies.
    config: extra librdkafka consumer settings.
    """
    names = [kafka_topic_name(topic) for topic in topics]
    overrides = {**({} if group else {"enable.auto.commit": False}), **(config or {})}
    consumer = Consumer(consumer_config(group or "chattalk-unused", **overrides))
    result = ConsumeResult()
    seen: set[str] = set()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        if group:
            consumer.subscribe(names)
        else:
            _assign_from_beginning(consumer, names)
        while True:
            if max_events is not None and len(result.events) >= max_events:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if should_stop is not None and should_stop():
                break
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            message = consumer.poll(wait)
            if message is None:
                continue
            if message.error():
                if message.error().code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                raise KafkaException(message.error())
            envelope = parse_envelope(message.value())
            if envelope is None:
                result.malformed += 1
                continue
            if accept is not None and not accept(envelope):
                result.ignored += 1
                continue
            if envelope["event_id"] in seen:
                result.duplicates += 1
                continue
            seen.add(envelope["event_id"])
            key = message.key()
            event = ConsumedEvent(
                envelope=envelope,
                topic=message.topic(),
                partition=message.partition(),
                offset=message.offset(),
                key=key.decode() if key is not None else None,
                received_at=time.time(),
            )
            result.events.append(event)
            result.counts[envelope["type"]] += 1
            if on_event is not None:
                on_event(event)
    finally:
        consumer.close()
    return result


def _assign_from_beginning(consumer: Consumer, names: list[str]) -> None:
    metadata = consumer.list_topics(timeout=10)
    partitions = [
        TopicPartition(name, partition, OFFSET_BEGINNING)
        for name in names
        if name in metadata.topics and metadata.topics[name].error is None
        for partition in metadata.topics[name].partitions
    ]
    if not partitions:
        raise KafkaException(f"none of the topics exists yet: {', '.join(names)}")
    consumer.assign(partitions)
