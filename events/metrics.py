"""The outbox backlog for /metrics: read from the shared database, so every process reports the same."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.metrics import REGISTRY

from .services import outbox_backlog

logger = logging.getLogger(__name__)


class OutboxCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        readable = "chattalk_outbox_readable"
        try:
            backlog = outbox_backlog()
        except Exception:  # noqa: BLE001 - a scrape must answer while the database is away
            logger.warning("metrics: the outbox backlog could not be read", exc_info=True)
            yield GaugeMetricFamily(readable, "0 when the outbox could not be read.", value=0)
            return
        yield GaugeMetricFamily(readable, "0 when the outbox could not be read.", value=1)
        yield GaugeMetricFamily(
            "chattalk_outbox_pending", "Outbox events not yet relayed to Kafka.", value=backlog["pending"]
        )
        yield GaugeMetricFamily(
            "chattalk_outbox_oldest_age_seconds",
            "Age of the oldest event not yet relayed; 0 when the outbox is empty.",
            value=backlog["oldest_age_seconds"],
        )


REGISTRY.register(OutboxCollector())
