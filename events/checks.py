"""System checks for the event stream's settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags

from .kafka import bootstrap_server_problems, extra_client_config


def kafka_settings_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """A malformed KAFKA_BOOTSTRAP_SERVERS would only show up as a relay that never delivers: refuse it early."""
    problems: list[CheckMessage] = []
    servers = settings.KAFKA_BOOTSTRAP_SERVERS
    if servers:
        reasons = bootstrap_server_problems(servers)
        if reasons:
            problems.append(
                Error(
                    f"KAFKA_BOOTSTRAP_SERVERS={servers!r} is malformed: {'; '.join(reasons)}.",
                    hint="A comma-separated list of host:port, e.g. kafka-1:9092,kafka-2:9092.",
                    id="events.E001",
                )
            )
    try:
        extra_client_config(settings.KAFKA_CLIENT_CONFIG)
    except ValueError as exc:
        problems.append(
            Error(f"KAFKA_CLIENT_CONFIG is not a JSON object of librdkafka settings: {exc}", id="events.E004")
        )
    if settings.KAFKA_TOPIC_PARTITIONS < 1:
        problems.append(Error("KAFKA_TOPIC_PARTITIONS must be at least 1.", id="events.E002"))
    if settings.KAFKA_TOPIC_REPLICATION == 0 or settings.KAFKA_TOPIC_REPLICATION < -1:
        problems.append(
            Error("KAFKA_TOPIC_REPLICATION must be at least 1, or -1 for the broker's default.", id="events.E005")
        )
    if settings.EVENTS_RELAY_PARTITIONS < 1 or settings.EVENTS_RELAY_LEASE_SECONDS < 1:
        problems.append(
            Error("EVENTS_RELAY_PARTITIONS and EVENTS_RELAY_LEASE_SECONDS must be at least 1.", id="events.E006")
        )
    if settings.EVENTS_RELAY_BATCH_SIZE < 1:
        problems.append(Error("EVENTS_RELAY_BATCH_SIZE must be at least 1.", id="events.E003"))
    return problems


def register_checks() -> None:
    from django.core.checks import register

    register(kafka_settings_check, Tags.compatibility)
