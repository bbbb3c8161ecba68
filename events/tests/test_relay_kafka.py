"""The relay against a real broker: every committed event arrives, once in the normal path, in order per room.

Consumers here read every partition from the beginning of fresh, per-test topics (KAFKA_TOPIC_PREFIX) and
filter by what they look for; nothing relies on "latest" offsets (Tansu reports them wrongly).
"""

from __future__ import annotations

import json
import re
import signal
import time
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from django.core.management import call_command
from django.db import transaction

from core.testing import wait_until
from events.consumer import ENVELOPE_FIELDS, ConsumeResult, consume_events
from events.kafka import ensure_topics, kafka_cluster_answers
from events.leases import lease_overview
from events.models import OutboxEvent
from events.relay import Relay
from events.testing import RelayProcess, TansuBroker
from events.topics import ALL_TOPICS, MESSAGES, PRESENCE, kafka_topic_name
from messaging.services import send_message
from rooms.services import create_room, join_room, leave_room

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def consume_room_events(
    room_ids: set[int], expected: int, timeout: float = 30.0, linger: float = 1.0, **kwargs: Any
) -> ConsumeResult:
    """Read the rooms' events until `expected` distinct ones arrived, then `linger` seconds more for extras."""
    arrived: list[float] = []

    def count(_event: Any) -> None:
        arrived.append(time.monotonic())

    return consume_events(
        group=None,
        timeout=timeout,
        accept=lambda envelope: envelope["room_id"] in room_ids,
        on_event=count,
        should_stop=lambda: len(arrived) >= expected and time.monotonic() - arrived[expected - 1] >= linger,
        **kwargs,
    )


def assert_per_room_order(result: ConsumeResult, expected_ids_by_room: dict[int, list[str]]) -> None:
    """First copies, per (room, topic), arrive in outbox (= commit) order; message seqs rise without gaps."""
    order = {event_id: index for ids in expected_ids_by_room.values() for index, event_id in enumerate(ids)}
    seen: dict[tuple[int, str], list[int]] = defaultdict(list)
    seqs: dict[int, list[int]] = defaultdict(list)
    for event in result.events:
        envelope = event.envelope
        seen[(envelope["room_id"], event.topic)].append(order[envelope["event_id"]])
        if envelope["type"] == "message.created":
            seqs[envelope["room_id"]].append(envelope["data"]["seq"])
    for positions in seen.values():
        assert positions == sorted(positions)
    for room_seqs in seqs.values():
        assert room_seqs == list(range(room_seqs[0], room_seqs[0] + len(room_seqs)))


def outbox_ids_by_room(room_ids: set[int]) -> dict[int, list[str]]:
    ids: dict[int, list[str]] = defaultdict(list)
    for room_id, event_id in (
        OutboxEvent.objects.filter(room_id__in=room_ids).order_by("id").values_list("room_id", "event_id")
    ):
        ids[room_id].append(str(event_id))
    return ids


def test_every_event_of_a_session_arrives_once_in_seq_order_with_the_envelope(topic_prefix, make_user):
    owner, *guests = (make_user() for _ in range(3))
    room = create_room(owner=owner, title="scripted", max_personnel=10)
    for guest in guests:
        join_room(room_id=room.pk, user=guest)
    people = [owner, *guests]
    for n in range(100):
        send_message(room_id=room.pk, sender=people[n % 3], client_id=f"m{n}", body=f"message {n}")
    for guest in guests:
        leave_room(room_id=room.pk, user=guest)
    rows = list(OutboxEvent.objects.filter(room_id=room.pk).order_by("id"))
    # room.created, 3 joins with their ENTER, 100 messages, 2 leaves with their LEAVE.
    assert len(rows) == 1 + 3 * 2 + 100 + 2 * 2

    assert Relay(batch_size=50).run(once=True) == len(rows)
    assert not OutboxEvent.objects.filter(sent_at__isnull=True).exists()

    result = consume_room_events({room.pk}, expected=len(rows), timeout=20.0)
    assert result.duplicates == 0
    assert [e.envelope["event_id"] for e in result.events if e.topic.endswith(MESSAGES)] == [
        str(r.event_id) for r in rows if r.topic == MESSAGES
    ]
    assert sorted(e.envelope["event_id"] for e in result.events) == sorted(str(r.event_id) for r in rows)
    assert_per_room_order(result, outbox_ids_by_room({room.pk}))
    by_id = {str(r.event_id): r for r in rows}
    for event in result.events:
        envelope = event.envelope
        assert set(envelope) == set(ENVELOPE_FIELDS)
        row = by_id[envelope["event_id"]]
        assert envelope["type"] == row.event_type and envelope["version"] == 1
        assert envelope["room_id"] == room.pk and event.key == str(room.pk)
        assert event.topic == kafka_topic_name(row.topic)
        datetime.fromisoformat(envelope["occurred_at"])
    assert [e.envelope["data"]["body"] for e in result.events if e.envelope["data"].get("kind") == "TALK"] == [
        f"message {n}" for n in range(100)
    ]
    assert result.counts == {"room.created": 1, "member.joined": 3, "member.left": 2, "message.created": 105}
    assert len({e.partition for e in result.events if e.topic.endswith(MESSAGES)}) == 1


def test_a_rolled_back_transaction_publishes_nothing(topic_prefix, make_user):
    owner = make_user()
    room = create_room(owner=owner, title="rollback", max_personnel=10)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        send_message(room_id=room.pk, sender=owner, client_id="rolled-back", body="never happened")
        raise Abort()
    send_message(room_id=room.pk, sender=owner, client_id="committed", body="after the rollback")
    call_command("relay_events", once=True)

    result = consume_room_events({room.pk}, expected=4, timeout=20.0)
    client_ids = [e.envelope["data"].get("client_id") for e in result.events if e.envelope["type"] == "message.created"]
    assert "committed" in client_ids
    assert "rolled-back" not in client_ids
    assert len(result.events) == OutboxEvent.objects.filter(room_id=room.pk).count() == 4


def test_the_relay_creates_missing_topics_with_the_configured_partitions(topic_prefix, settings):
    settings.KAFKA_TOPIC_PARTITIONS = 3
    assert sorted(ensure_topics()) == sorted(kafka_topic_name(t) for t in ALL_TOPICS)
    assert ensure_topics() == []
    from events.kafka import new_admin

    topics = new_admin().list_topics(timeout=5).topics
    assert all(len(topics[kafka_topic_name(t)].partitions) == 3 for t in ALL_TOPICS)


def test_kafka_cluster_answers_raises_when_nothing_listens(settings):
    kafka_cluster_answers(timeout=3.0)  # the run's broker
    from core.testing import free_port

    settings.KAFKA_BOOTSTRAP_SERVERS = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - any error: it did not answer
        kafka_cluster_answers(timeout=1.0)
    assert time.monotonic() - started < 5


def relay_env(prefix: str, bootstrap: str | None = None) -> dict[str, str]:
    from django.conf import settings

    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap or settings.KAFKA_BOOTSTRAP_SERVERS,
        "KAFKA_TOPIC_PREFIX": prefix,
        "EVENTS_RELAY_BACKOFF_MAX_SECONDS": "1",
        "EVENTS_RELAY_BATCH_SIZE": "20",
    }


def unsent(room_id: int) -> int:
    return OutboxEvent.objects.filter(room_id=room_id, sent_at__isnull=True).count()


def test_a_broker_outage_loses_nothing_and_marks_nothing_sent_while_down(topic_prefix, make_user, settings):
    broker = TansuBroker().start()
    relay = RelayProcess(
        relay_env(topic_prefix, broker.bootstrap),
        name="relay-outage",
        args=["--poll-interval", "0.05", "--stall-restart", "3"],
    ).start()
    try:
        owner = make_user()
        room = create_room(owner=owner, title="outage", max_personnel=10)
        wait_until(lambda: unsent(room.pk) == 0, 20, what="the relay publishes before the outage")

        broker.stop()
        for n in range(100):
            send_message(room_id=room.pk, sender=owner, client_id=f"down{n}", body=f"during the outage {n}")
        wait_until(lambda: "kafka unavailable" in relay.log(), 20, what="the relay reports the outage")
        assert unsent(room.pk) == 100  # nothing marked sent while the broker is down
        assert relay.alive()

        broker.start()  # the same port; Tansu keeps nothing, the outbox is the durable copy
        wait_until(lambda: unsent(room.pk) == 0, 60, interval=0.2, what="the backlog drains after the outage")
        settings.KAFKA_BOOTSTRAP_SERVERS = broker.bootstrap
        result = consume_room_events({room.pk}, expected=100, timeout=20.0, topics=[MESSAGES])
        bodies = [e.envelope["data"]["body"] for e in result.events]
        assert bodies == [f"during the outage {n}" for n in range(100)]
        assert "kafka reachable again" in relay.log()
        assert relay.stop() == 0  # graceful SIGTERM
    finally:
        relay.stop(signal.SIGKILL)
        broker.stop()


def parallel_relay_env(prefix: str, partitions: int) -> dict[str, str]:
    # A short lease: a killed relay's partitions move after 2 s plus 1 s of grace.
    return {**relay_env(prefix), "EVENTS_RELAY_PARTITIONS": str(partitions), "EVENTS_RELAY_LEASE_SECONDS": "2"}


def rooms_with_members(users: list[Any], count: int) -> list[Any]:
    rooms = [create_room(owner=users[n % len(users)], title=f"parallel {n}", max_personnel=10) for n in range(count)]
    for room in rooms:
        for user in users:
            join_room(room_id=room.pk, user=user)
    return rooms


def send_rounds(rooms: list[Any], users: list[Any], start: int, count: int) -> None:
    for n in range(start, start + count):
        for room in rooms:
            send_message(room_id=room.pk, sender=users[n % len(users)], client_id=f"r{n}", body=f"{room.pk}:{n}")


def assert_talk_in_order(result: ConsumeResult, rooms: list[Any], rounds: int) -> None:
    for room in rooms:
        talk = [
            e.envelope["data"]["body"]
            for e in result.events
            if e.envelope["room_id"] == room.pk and e.envelope["data"].get("kind") == "TALK"
        ]
        assert talk == [f"{room.pk}:{n}" for n in range(rounds)]


def sent_count(log: str) -> int:
    """From the relay's last words: `relay: stopped after sending N events`."""
    match = re.search(r"stopped after sending (\d+) events", log)
    assert match, log[-2000:]
    return int(match.group(1))


def test_three_relays_share_the_outbox_each_publishes_some_and_every_event_arrives_once_in_order(
    topic_prefix, make_user
):
    relays = [RelayProcess(parallel_relay_env(topic_prefix, 6), name=f"relay-share-{n}").start() for n in range(3)]
    try:
        # Each takes its fair share, 2 of the 6 partitions, before anything is written.
        wait_until(
            lambda: sorted(lease_overview().values()) == [2, 2, 2], 30, what="three relays hold 2 partitions each"
        )
        users = [make_user() for _ in range(3)]
        rooms = rooms_with_members(users, 12)  # consecutive room ids: every partition has rooms
        send_rounds(rooms, users, 0, 10)
        room_ids = {room.pk for room in rooms}
        wait_until(
            lambda: not OutboxEvent.objects.filter(room_id__in=room_ids, sent_at__isnull=True).exists(),
            40,
            interval=0.2,
            what="all rooms' events sent",
        )
        expected = OutboxEvent.objects.filter(room_id__in=room_ids).count()
        result = consume_room_events(room_ids, expected=expected, timeout=30.0)
        assert len(result.events) == expected
        assert result.duplicates == 0  # nobody failed: every event exactly once
        assert_per_room_order(result, outbox_ids_by_room(room_ids))
        assert_talk_in_order(result, rooms, 10)
        for relay in relays:
            assert relay.stop() == 0
        assert all(sent_count(relay.log()) > 0 for relay in relays), "each relay published its share"
    finally:
        for relay in relays:
            relay.stop(signal.SIGKILL)


def test_a_relay_killed_mid_stream_hands_its_partitions_over_and_per_room_order_holds(
    topic_prefix, make_user, settings
):
    relays = [RelayProcess(parallel_relay_env(topic_prefix, 4), name=f"relay-kill-{n}").start() for n in range(2)]
    try:
        wait_until(lambda: sorted(lease_overview().values()) == [2, 2], 30, what="two relays hold 2 partitions each")
        users = [make_user() for _ in range(3)]
        rooms = rooms_with_members(users, 8)
        room_ids = {room.pk for room in rooms}
        unsent_rows = OutboxEvent.objects.filter(room_id__in=room_ids, sent_at__isnull=True)
        send_rounds(rooms, users, 0, 20)
        victim, survivor = relays
        victim.stop(signal.SIGKILL)  # mid-stream: no goodbye, its leases stay until they expire
        killed_at, killed_wall = time.monotonic(), datetime.now()
        unsent_at_kill = unsent_rows.count()
        send_rounds(rooms, users, 20, 20)
        wait_until(lambda: lease_overview() == {survivor_name(survivor): 4}, 30, what="the survivor holds all")
        took_over = (takeover_logged_at(survivor.log()) - killed_wall).total_seconds()
        wait_until(lambda: not unsent_rows.exists(), 40, interval=0.2, what="all rooms' events sent")
        drained = time.monotonic() - killed_at
        expected = OutboxEvent.objects.filter(room_id__in=room_ids).count()
        result = consume_room_events(room_ids, expected=expected, timeout=30.0)
        # At least once: a row the victim had delivered but not marked is sent again by the survivor; the
        # first copies (what a consumer deduping by event_id keeps) are complete and in order per room.
        assert len(result.events) == expected
        assert_per_room_order(result, outbox_ids_by_room(room_ids))
        assert_talk_in_order(result, rooms, 40)
        assert "holds 4 of 4 outbox partitions" in survivor.log()
        figures = {
            "events": expected,
            "unsent_at_kill": unsent_at_kill,
            "duplicates_seen_by_consumer": result.duplicates,
            "seconds_kill_to_takeover_seen": round(took_over, 2),
            "seconds_kill_to_all_sent": round(drained, 2),
        }
        report = Path(settings.BASE_DIR) / "var" / "faults" / "relay_killed_mid_stream.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(figures, indent=2) + "\n")
        assert survivor.stop() == 0
    finally:
        for relay in relays:
            relay.stop(signal.SIGKILL)


def takeover_logged_at(log: str) -> datetime:
    """When the relay last logged that it holds every partition (local time, as datetime.now())."""
    found = re.findall(r"^(\S+ \S+) INFO events.relay .*holds (\d+) of \2 outbox partitions", log, re.MULTILINE)
    assert found, log[-2000:]
    return datetime.strptime(found[-1][0], "%Y-%m-%d %H:%M:%S,%f")  # the last: at start it may hold all too


def survivor_name(relay: RelayProcess) -> str:
    match = re.search(r"relay (relay-[0-9a-f]+): publishing", relay.log())
    assert match, relay.log()[-2000:]
    return match.group(1)


def test_the_relay_creates_every_contract_topic_at_start_so_consumers_may_subscribe_first(topic_prefix, settings):
    from events.kafka import new_admin

    with pytest.raises(KafkaException):  # before: no topic of this prefix exists
        consume_events(group=None, topics=[PRESENCE], timeout=0.5)
    relay = RelayProcess({**relay_env(topic_prefix), "KAFKA_TOPIC_PARTITIONS": "3"}, name="relay-topics").start()
    try:
        names = [kafka_topic_name(topic) for topic in ALL_TOPICS]
        admin = new_admin()
        topics = wait_until(
            lambda: (found := admin.list_topics(timeout=5).topics) and all(n in found for n in names) and found,
            20,
            what="every contract topic exists",
        )
        assert all(len(topics[name].partitions) == 3 for name in names)
        # No event was ever written: a reader of a quiet topic still finds it.
        assert consume_events(group=None, topics=[PRESENCE], timeout=0.5).events == []
        assert not OutboxEvent.objects.exists()
    finally:
        relay.stop(signal.SIGKILL)


def test_consume_events_command_counts_by_type_and_skips_duplicates(topic_prefix, make_user, capsys):
    import json

    from confluent_kafka import Producer

    from events.kafka import producer_config

    owner = make_user()
    room = create_room(owner=owner, title="counted", max_personnel=10)
    send_message(room_id=room.pk, sender=owner, client_id="x", body="counted")
    Relay().run(once=True)
    # A second copy of room.created, as after a relay crash between delivery and marking, then a new event
    # behind it in the same partition: reading that one means the copy was read (and skipped) before.
    created = OutboxEvent.objects.get(room_id=room.pk, event_type="room.created")
    sentinel = {**created.payload, "event_id": str(uuid.uuid4()), "type": "room.updated"}
    producer = Producer(producer_config())
    for payload in (created.payload, sentinel):
        producer.produce(kafka_topic_name(created.topic), key=created.key, value=json.dumps(payload))
    assert producer.flush(10) == 0
    call_command("consume_events", group=f"g-{uuid.uuid4().hex[:8]}", max_events=5, timeout=20, count_only=True)
    out = capsys.readouterr().out
    assert (
        "consumed 5 events (member.joined=1, message.created=2, room.created=1, room.updated=1); "
        "1 duplicates skipped, 0 malformed"
    ) in out


def test_sigterm_during_an_outage_exits_promptly_and_marks_nothing(topic_prefix, make_user):
    broker = TansuBroker().start()
    relay = RelayProcess(relay_env(topic_prefix, broker.bootstrap), name="relay-sigterm").start()
    try:
        owner = make_user()
        room = create_room(owner=owner, title="sigterm", max_personnel=10)
        wait_until(lambda: unsent(room.pk) == 0, 20, what="the relay publishes")
        broker.stop()
        for n in range(5):
            send_message(room_id=room.pk, sender=owner, client_id=f"t{n}", body="waiting")
        time.sleep(1.0)  # the relay has picked the rows up and waits for the broker
        started = time.monotonic()
        assert relay.stop(signal.SIGTERM, timeout=15) == 0
        assert time.monotonic() - started < 10
        assert unsent(room.pk) == 5
        assert "SIGTERM received" in relay.log() and "stopped after sending" in relay.log()
    finally:
        relay.stop(signal.SIGKILL)
        broker.stop()


def test_readyz_reports_kafka_up_and_the_outbox_backlog(client, make_user):
    owner = make_user()
    create_room(owner=owner, title="backlog", max_personnel=10)
    body = client.get("/readyz").json()
    assert body["services"]["kafka"]["state"] == "up"
    assert body["outbox"]["pending"] == OutboxEvent.objects.filter(sent_at__isnull=True).count() >= 3
    assert body["outbox"]["oldest_age_seconds"] >= 0


def test_a_lower_id_that_commits_late_is_still_sent(topic_prefix):
    """Rows of different rooms can commit out of id order: the relay keeps no watermark, so none is skipped."""
    import threading

    from django.db import connections

    from events.services import record_event

    inserted, release, done = threading.Event(), threading.Event(), threading.Event()

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                record_event("room.updated", room_id=1001, data={"late": True})
                inserted.set()
                release.wait(10)
        finally:
            connections.close_all()
            done.set()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert inserted.wait(10)
    with transaction.atomic():
        record_event("room.updated", room_id=1002, data={"late": False})
    assert Relay().run(once=True) == 1  # only the committed row 1002 is visible yet
    release.set()
    writer.join(10)
    assert done.is_set()
    assert Relay().run(once=True) == 1  # the lower id, committed after a higher one was sent
    assert not OutboxEvent.objects.filter(sent_at__isnull=True).exists()
    late, early = OutboxEvent.objects.order_by("id")
    assert late.room_id == 1001 and late.sent_at > early.sent_at
    result = consume_room_events({1001, 1002}, expected=2, timeout=20.0)
    assert {e.envelope["room_id"] for e in result.events} == {1001, 1002}


def split_evenly() -> dict[str, int] | None:
    """The lease overview once two relays hold 8 of 16 partitions each."""
    overview = lease_overview()
    return overview if sorted(overview.values()) == [8, 8] else None


def test_relays_whose_database_sessions_are_killed_reconnect_keep_their_leases_and_order_holds(topic_prefix, make_user):
    from django.db import connection

    # Named sessions, so that only the relays' are killed (not this process's pooled connections).
    env = {**relay_env(topic_prefix), "PGAPPNAME": "relay-session-killed"}
    relays = [RelayProcess(env, name=f"relay-kill-{n}").start() for n in range(2)]
    try:
        owner = make_user()
        room = create_room(owner=owner, title="session killed", max_personnel=10)

        def send(start: int, count: int) -> None:
            for n in range(start, start + count):
                send_message(room_id=room.pk, sender=owner, client_id=f"k{n}", body=f"{n}")

        send(0, 30)
        wait_until(lambda: unsent(room.pk) == 0, 30, what="the relays publish")
        shares = wait_until(split_evenly, 30, what="the relays share the 16 partitions")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'relay-session-killed'"
            )
            assert len(cursor.fetchall()) >= 2
        send(30, 30)
        wait_until(lambda: unsent(room.pk) == 0, 30, interval=0.2, what="publication resumes")
        assert all(relay.alive() for relay in relays)
        # A lease is not a session: a relay that reconnects keeps its partitions (nothing moved, no takeover).
        assert lease_overview() == shares
        assert "taken over" not in "".join(relay.log() for relay in relays)
        result = consume_room_events({room.pk}, expected=OutboxEvent.objects.filter(room_id=room.pk).count())
        talk = [e.envelope["data"]["body"] for e in result.events if e.envelope["data"].get("kind") == "TALK"]
        assert talk == [str(n) for n in range(60)]
    finally:
        for relay in relays:
            relay.stop(signal.SIGKILL)


def test_once_exits_quietly_while_another_relay_leases_every_partition(topic_prefix, make_user, caplog):
    leader = RelayProcess(relay_env(topic_prefix), name="relay-holder").start()
    try:
        owner = make_user()
        room = create_room(owner=owner, title="cron", max_personnel=10)
        wait_until(lambda: unsent(room.pk) == 0, 30, what="the long-running relay publishes")
        caplog.set_level("INFO", logger="events.relay")
        assert Relay().run(once=True) == 0  # a cron run while a relay is up: no error, nothing sent twice
        assert "other relays lease every outbox partition and publish; exiting" in caplog.text
    finally:
        leader.stop()
