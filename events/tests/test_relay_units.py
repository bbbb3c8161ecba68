"""The pure parts of the relay and the outbox (embedded run: no broker needed)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from django.core.checks import run_checks
from django.db import transaction
from django.utils import timezone

from events.checks import kafka_settings_check
from events.consumer import parse_envelope
from events.kafka import bootstrap_server_problems
from events.models import OutboxEvent
from events.relay import NOT_REPORTED, Relay, backoff_seconds, plan_marks
from events.services import outbox_backlog, prune_sent_events, record_event


def test_plan_marks_keeps_only_the_delivered_prefix_of_each_room():
    rows = [(1, "7"), (2, "8"), (3, "7"), (4, "8"), (5, "7"), (6, "9")]
    outcomes = {1: None, 2: None, 3: "timed out", 4: None, 5: None, 6: None}
    sent, failures = plan_marks(rows, outcomes)
    # Room 7 stops at its failed row 3: row 5 got through but must be sent again after 3.
    assert sent == [1, 2, 4, 6]
    assert failures == {3: "timed out"}


def test_plan_marks_treats_a_row_without_report_as_failed():
    sent, failures = plan_marks([(1, "1"), (2, "1")], {1: None})
    assert sent == [1]
    assert failures == {2: NOT_REPORTED}


def test_backoff_grows_and_is_capped():
    assert backoff_seconds(1, 30) <= 0.5
    assert 3.2 <= backoff_seconds(4, 30) <= 4.0
    assert all(backoff_seconds(n, 5) <= 5 for n in range(1, 60))


@pytest.mark.parametrize(
    "value", ["127.0.0.1:9092", "kafka-1:9092,kafka-2:9093", "SASL_SSL://broker.example.com:9094", "[::1]:9092"]
)
def test_well_formed_bootstrap_servers_pass(value):
    assert bootstrap_server_problems(value) == []


@pytest.mark.parametrize("value", ["kafka", "kafka:", "kafka:port", "host:99999", ",", "a b:9092", "http//x:1"])
def test_malformed_bootstrap_servers_are_refused(value):
    assert bootstrap_server_problems(value)


def test_system_check_refuses_a_malformed_kafka_bootstrap(settings):
    settings.KAFKA_BOOTSTRAP_SERVERS = "kafka-without-port"
    errors = [m for m in kafka_settings_check(None) if m.id == "events.E001"]
    assert errors and "kafka-without-port" in errors[0].msg
    # Registered with Django's check framework, not only callable.
    assert "events.E001" in {m.id for m in run_checks()}
    settings.KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:9092"
    assert "events.E001" not in {m.id for m in run_checks()}


def test_parse_envelope_needs_every_contract_field():
    good = {"event_id": "x", "type": "t", "version": 1, "occurred_at": "now", "room_id": 1, "data": {}}
    assert parse_envelope(json.dumps(good).encode()) == good
    bad = dict(good)
    del bad["event_id"]
    assert parse_envelope(json.dumps(bad).encode()) is None
    assert parse_envelope(b"not json") is None
    assert parse_envelope(None) is None


@pytest.mark.django_db(transaction=True)
def test_record_event_refuses_to_run_outside_a_transaction():
    with pytest.raises(RuntimeError):
        record_event("message.created", room_id=1, data={})
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db
def test_prune_deletes_only_sent_rows_older_than_the_cutoff():
    with transaction.atomic():
        old_sent, new_sent, pending = (record_event("room.created", room_id=i, data={}) for i in (1, 2, 3))
    now = timezone.now()
    OutboxEvent.objects.filter(pk=old_sent.pk).update(sent_at=now - timedelta(days=10))
    OutboxEvent.objects.filter(pk=new_sent.pk).update(sent_at=now - timedelta(hours=1))
    assert prune_sent_events(older_than=now - timedelta(days=3), chunk=1) == 1
    assert set(OutboxEvent.objects.values_list("pk", flat=True)) == {new_sent.pk, pending.pk}
    assert outbox_backlog()["pending"] == 1


class ScriptedProducer:
    """A stand-in broker for the batch logic: refuses chosen bodies at produce() (a local error) or fails their
    delivery report (reported later, as a real producer does), and delivers the rest."""

    def __init__(self, refuse: set[str] = frozenset(), fail: set[str] = frozenset()):
        self.refuse, self.fail = refuse, fail
        self.produced: list[tuple[str, bytes | None, dict[str, Any]]] = []
        self.pending: list[tuple[Any, Any]] = []

    def produce(self, topic: str, key: bytes | None, value: bytes, on_delivery: Any) -> None:
        envelope = json.loads(value)
        body = envelope["data"].get("body")
        if body in self.refuse:
            raise KafkaException(KafkaError(KafkaError._FATAL))
        self.produced.append((topic, key, envelope))
        self.pending.append((on_delivery, KafkaError(KafkaError._MSG_TIMED_OUT) if body in self.fail else None))

    def poll(self, timeout: float = 0) -> int:
        served, self.pending = self.pending, []
        for callback, error in served:
            callback(error, None)
        return len(served)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0

    def purge(self) -> None:
        self.pending = []

    def __len__(self) -> int:
        return len(self.pending)


def bodies(producer: ScriptedProducer) -> list[str]:
    return [envelope["data"]["body"] for _t, _k, envelope in producer.produced]


def sent_bodies() -> set[str]:
    return set(OutboxEvent.objects.filter(sent_at__isnull=False).values_list("payload__data__body", flat=True))


@pytest.fixture
def two_rooms_of_events(settings):
    settings.KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:1"
    with transaction.atomic():
        for n in range(3):
            record_event("message.created", room_id=1, data={"body": f"a{n}"})
            record_event("message.created", room_id=2, data={"body": f"b{n}"})


@pytest.fixture
def relay_with(monkeypatch):
    relays: list[Relay] = []

    def make(producer: ScriptedProducer) -> Relay:
        relay = Relay(producer_factory=lambda: producer, batch_size=100)
        monkeypatch.setattr(relay, "_ensure_topics", lambda topics: None)
        relay.leases.prepare()
        assert relay.leases.round(take_all=True).held  # only a lease holder may mark rows sent
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        relay.leases.release_all()


@pytest.mark.django_db
def test_a_row_refused_at_produce_stops_its_room_for_the_batch_while_other_rooms_go_on(two_rooms_of_events, relay_with):
    producer = ScriptedProducer(refuse={"a1"})
    result = relay_with(producer).relay_batch()
    # a2 is never produced after a1 was refused; room 2 is unaffected.
    assert bodies(producer) == ["a0", "b0", "b1", "b2"]
    assert result.error is not None and result.sent == 4
    assert sent_bodies() == {"a0", "b0", "b1", "b2"}
    refused = OutboxEvent.objects.get(payload__data__body="a1")
    assert refused.sent_at is None and refused.attempts == 1 and "_FATAL" in refused.last_error


@pytest.mark.django_db
def test_a_failed_delivery_leaves_the_rest_of_its_room_unsent_and_the_retry_starts_from_it(
    two_rooms_of_events, relay_with
):
    producer = ScriptedProducer(fail={"a1"})
    relay = relay_with(producer)
    result = relay.relay_batch()
    assert result.error is not None
    # a2 was delivered, but after a failed a1 it is not marked: it goes again after a1.
    assert sent_bodies() == {"a0", "b0", "b1", "b2"}
    failed = OutboxEvent.objects.get(payload__data__body="a1")
    assert failed.attempts == 1 and "MSG_TIMED_OUT" in failed.last_error
    retry = ScriptedProducer()
    relay.producer_factory = lambda: retry
    assert relay.relay_batch().error is None  # a1 alone: its room was held back behind it
    assert relay.relay_batch().error is None
    assert bodies(retry) == ["a1", "a2"]
    assert [key for _t, key, _e in retry.produced] == [b"1", b"1"]
    assert not OutboxEvent.objects.filter(sent_at__isnull=True).exists()


@pytest.mark.django_db
def test_outbox_admin_is_read_only_and_shows_the_backlog(client, django_user_model):
    admin_user = django_user_model.objects.create_superuser(username="root-ev", password="pw-Secret-123")
    client.force_login(admin_user)
    with transaction.atomic():
        event = record_event("room.created", room_id=5, data={})
    page = client.get("/admin/events/outboxevent/")
    assert page.status_code == 200
    assert b"1 pending" in page.content
    assert client.get("/admin/events/outboxevent/add/").status_code == 403
    detail = client.post(f"/admin/events/outboxevent/{event.pk}/change/", {"topic": "x"})
    assert OutboxEvent.objects.get(pk=event.pk).topic == "chattalk.rooms"
    assert detail.status_code in (200, 403)
    assert client.post(f"/admin/events/outboxevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert OutboxEvent.objects.filter(pk=event.pk).exists()


def test_relay_command_needs_a_kafka_bootstrap(settings):
    from django.core.management import CommandError, call_command

    settings.KAFKA_BOOTSTRAP_SERVERS = ""
    with pytest.raises(CommandError, match="KAFKA_BOOTSTRAP_SERVERS"):
        call_command("relay_events", once=True)


@pytest.mark.django_db
def test_relay_housekeeping_prunes_sent_rows_past_the_retention(settings):
    settings.EVENTS_RETENTION = timedelta(hours=1)
    with transaction.atomic():
        old, recent = (record_event("room.created", room_id=i, data={}) for i in (1, 2))
    OutboxEvent.objects.filter(pk=old.pk).update(sent_at=timezone.now() - timedelta(hours=2))
    OutboxEvent.objects.filter(pk=recent.pk).update(sent_at=timezone.now() - timedelta(minutes=5))
    Relay(producer_factory=lambda: ScriptedProducer())._housekeeping()
    assert list(OutboxEvent.objects.values_list("pk", flat=True)) == [recent.pk]


def test_a_database_error_while_pruning_leaves_the_relay_running(monkeypatch, caplog):
    """A relay whose session was killed while it pruned crashed (the suite's killed-sessions test caught it):
    pruning waits for its next round instead, and the broken connection is dropped."""
    from django.db import OperationalError

    import events.relay as relay_module

    def killed(**kwargs: Any) -> int:
        raise OperationalError("terminating connection due to administrator command")

    closed: list[bool] = []
    monkeypatch.setattr(relay_module, "prune_sent_events", killed)
    monkeypatch.setattr(relay_module, "connection", type("Conn", (), {"close": lambda self: closed.append(True)})())
    monkeypatch.setattr(Relay, "report", lambda self: None)
    Relay(producer_factory=lambda: ScriptedProducer())._housekeeping()
    assert closed == [True]
    assert "pruning failed" in caplog.text


@pytest.mark.django_db
def test_a_room_stuck_behind_a_refused_row_does_not_hold_back_other_rooms(two_rooms_of_events, relay_with):
    producer = ScriptedProducer(refuse={"a1"})  # Kafka refuses a1 for good (say, too large)
    relay = relay_with(producer)
    relay.batch_size = 2  # room 1's a1 and a2 alone would fill a batch
    with pytest.raises(RuntimeError, match="kafka unavailable"):
        relay.run(once=True)  # --once gives up once nothing but the stuck room is left
    assert sent_bodies() == {"a0", "b0", "b1", "b2"}
    assert bodies(producer).count("a2") == 0  # never sent ahead of the row it follows


@pytest.mark.parametrize("value", ["not json", "[1, 2]", '"SASL_SSL"'])
def test_system_check_refuses_a_kafka_client_config_that_is_not_a_json_object(settings, value):
    settings.KAFKA_CLIENT_CONFIG = value
    assert "events.E004" in {m.id for m in kafka_settings_check(None)}


def test_kafka_client_config_reaches_every_client(settings):
    from events.kafka import consumer_config, producer_config

    settings.KAFKA_BOOTSTRAP_SERVERS = "kafka-1:9093"
    settings.KAFKA_CLIENT_CONFIG = '{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}'
    assert kafka_settings_check(None) == []
    for config in (producer_config(), consumer_config("g")):
        assert config["security.protocol"] == "SASL_SSL" and config["bootstrap.servers"] == "kafka-1:9093"
    assert producer_config()["enable.idempotence"] is True  # the relay's guarantees are not overridable here


@pytest.mark.django_db
def test_a_relay_whose_partitions_were_taken_over_marks_none_of_their_rows(two_rooms_of_events, relay_with):
    from events.models import RelayLease

    relay = relay_with(ScriptedProducer())
    # Another relay took room 1's partition over (a new epoch) while this one still believes it owns it.
    taken = 1 % relay.leases.partition_count
    RelayLease.objects.filter(partition=taken).update(owner="successor", epoch=relay.leases.epochs[taken] + 1)
    result = relay.relay_batch()
    assert result.sent == 3  # room 2's rows only
    assert sent_bodies() == {"b0", "b1", "b2"}
    assert taken not in relay.leases.held
    assert relay.relay_batch().selected == 0  # room 1 is the successor's now


def test_created_topics_take_the_configured_partitions_and_replication(settings):
    from confluent_kafka.admin import NewTopic

    from events.kafka import ensure_topics

    settings.KAFKA_TOPIC_PARTITIONS, settings.KAFKA_TOPIC_REPLICATION = 12, 3
    settings.KAFKA_TOPIC_PREFIX = ""
    requested: list[NewTopic] = []

    class Done:
        def result(self, timeout: float) -> None:
            return None

    class Admin:
        def list_topics(self, timeout: float) -> Any:
            return type("Metadata", (), {"topics": {"chattalk.rooms": object()}})()

        def create_topics(self, topics: list[NewTopic], request_timeout: float) -> dict[str, Done]:
            requested.extend(topics)
            return {topic.topic: Done() for topic in topics}

    created = ensure_topics(admin=Admin())  # type: ignore[arg-type]
    assert sorted(created) == ["chattalk.memberships", "chattalk.messages", "chattalk.presence"]
    assert {(t.num_partitions, t.replication_factor) for t in requested} == {(12, 3)}


@pytest.mark.parametrize(
    ("name", "value", "check_id"),
    [
        ("KAFKA_TOPIC_REPLICATION", 0, "events.E005"),
        ("EVENTS_RELAY_PARTITIONS", 0, "events.E006"),
        ("EVENTS_RELAY_LEASE_SECONDS", 0, "events.E006"),
    ],
)
def test_system_check_refuses_relay_settings_that_cannot_work(settings, name, value, check_id):
    assert check_id not in {m.id for m in kafka_settings_check(None)}
    setattr(settings, name, value)
    assert check_id in {m.id for m in kafka_settings_check(None)}


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_relay_and_a_redaction_lock_outbox_rows_in_id_order(two_rooms_of_events, relay_with):
    """Both writers of stored events lock the rows they change in the same order, so that a deletion's
    redaction and a relay marking rows sent cannot deadlock on rows of the same room."""
    from datetime import UTC, datetime

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from events.services import PayloadSQL, rewrite_events

    with CaptureQueriesContext(connection) as marking:
        relay_with(ScriptedProducer()).relay_batch()
    with transaction.atomic(), CaptureQueriesContext(connection) as redacting:
        redacted = rewrite_events(
            1,
            datetime(2000, 1, 1, tzinfo=UTC),
            PayloadSQL("payload #>> '{data,body}' = %s", ["a1"]),
            PayloadSQL("%s::jsonb", ['{"redacted": true}']),
        )
    assert redacted == 1
    for captured in (marking, redacting):
        updates = [q["sql"] for q in captured.captured_queries if q["sql"].startswith('UPDATE "events_outboxevent"')]
        assert updates, captured.captured_queries
        assert all('ORDER BY 1 ASC FOR UPDATE' in sql for sql in updates), updates
