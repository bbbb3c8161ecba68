"""confluent-kafka clients built from settings, and the cluster probes the relay and /readyz use.

Only standard Kafka APIs: production runs a real Kafka cluster; development and tests run Tansu.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings

from .topics import ALL_TOPICS, kafka_topic_name

# host:port, host a name, IPv4 or [IPv6]; an optional scheme like PLAINTEXT:// or SASL_SSL:// is allowed.
_SERVER_RE = re.compile(
    r"^(?:[A-Za-z_]+://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?):(\d{1,5})$"
)


def bootstrap_server_problems(value: str) -> list[str]:
    """Why a KAFKA_BOOTSTRAP_SERVERS value cannot work ([] when it can); used by the system check."""
    problems = []
    servers = [part.strip() for part in value.split(",")]
    if not any(servers):
        return ["it names no server"]
    for server in servers:
        match = _SERVER_RE.match(server)
        if not match:
            problems.append(f"{server!r} is not host:port")
        elif not 1 <= int(match.group(1)) <= 65535:
            problems.append(f"{server!r} has a port outside 1-65535")
    return problems


def extra_client_config(value: str) -> dict[str, Any]:
    """KAFKA_CLIENT_CONFIG: a JSON object of librdkafka settings (security, SASL, TLS) for every client."""
    if not value:
        return {}
    config = json.loads(value)
    if not isinstance(config, dict):
        raise ValueError("KAFKA_CLIENT_CONFIG must be a JSON object")
    return config


def base_config() -> dict[str, Any]:
    # Reconnect quickly after an outage: the default backoff grows to 10 s, which only delays the catch-up.
    # librdkafka would log every refused reconnect; failures reach the caller (and its log lines) instead.
    return {
        "bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS,
        "client.id": "chattalk",
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 2000,
        "log_level": 2,
        **extra_client_config(settings.KAFKA_CLIENT_CONFIG),
    }


def producer_config() -> dict[str, Any]:
    """The relay's producer: idempotent (no duplicates or reordering from its own retries), acks from all
    in-sync replicas, and no message timeout (why: events.relay's docstring)."""
    return {
        **base_config(),
        "client.id": "chattalk-relay",
        "enable.idempotence": True,
        "acks": "all",
        "max.in.flight.requests.per.connection": 5,
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 0,
        # Topics are created by the relay with KAFKA_TOPIC_PARTITIONS, never by a metadata request's side effect.
        "allow.auto.create.topics": False,
    }


def consumer_config(group: str, **overrides: Any) -> dict[str, Any]:
    """A consumer group member that starts at the beginning when the group has no committed offset.

    session.timeout.ms stays at 6 s: a new group's first join waits about half of it on Tansu.
    """
    config = {
        **base_config(),
        "client.id": "chattalk-consumer",
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
    }
    config.update(overrides)
    return config


def new_producer(**overrides: Any) -> Producer:
    return Producer({**producer_config(), **overrides})


def new_admin() -> AdminClient:
    return AdminClient(base_config())


def kafka_cluster_answers(timeout: float) -> None:
    """Raise unless the cluster answers a metadata request within `timeout` seconds (for /readyz)."""
    if not settings.KAFKA_BOOTSTRAP_SERVERS:
        raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set")
    admin = AdminClient({**base_config(), "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000))})
    metadata = admin.list_topics(timeout=timeout)
    if not metadata.brokers:
        raise RuntimeError("the cluster answered with no brokers")


def ensure_topics(
    topics: Iterable[str] | None = None, *, admin: AdminClient | None = None, timeout: float = 10.0
) -> list[str]:
    """Create the broker-side topics (KAFKA_TOPIC_PREFIX + contract name) that are missing; return those created.

    Raises KafkaException when the cluster cannot be asked or refuses for another reason than "exists".
    """
    admin = admin or new_admin()
    names = [kafka_topic_name(topic) for topic in (topics or ALL_TOPICS)]
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [name for name in names if name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=settings.KAFKA_TOPIC_PARTITIONS,
                replication_factor=settings.KAFKA_TOPIC_REPLICATION,
            )
            for name in missing
        ],
        request_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # another relay created it between our list and our create
            raise
    return created
