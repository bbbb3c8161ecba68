"""What this process's sockets and streams did, for /metrics (registered with core.metrics at start-up)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from core.metrics import REGISTRY, registry_for_metrics

from .hub import current_hub
from .streams import DeliveryCounters

SOCKET_KINDS = ("chat", "presence")

SEND_TO_DELIVERY_SECONDS = Histogram(
    "chattalk_send_to_delivery_seconds",
    "Time from an event's commit to this process's hub handing it to its local sockets.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=registry_for_metrics(),
)
DeliveryCounters.latency_observer = SEND_TO_DELIVERY_SECONDS.observe


class HubCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        hub = current_hub()
        counts = dict(hub.socket_counts) if hub is not None else {}  # one atomic copy
        sockets = GaugeMetricFamily(
            "chattalk_open_sockets", "WebSocket connections open on this process.", labels=["kind"]
        )
        for kind in sorted(set(SOCKET_KINDS) | set(counts)):
            sockets.add_metric([kind], counts.get(kind, 0))
        yield sockets
        yield GaugeMetricFamily(
            "chattalk_hub_rooms",
            "Rooms with at least one socket on this process.",
            value=len(hub.streams.by_room) if hub is not None else 0,
        )
        yield CounterMetricFamily(
            "chattalk_messages",
            "Room events this process's hub put in seq order and handed to its sockets (once per event).",
            value=DeliveryCounters.events,
        )
        yield CounterMetricFamily(
            "chattalk_deliveries",
            "Event frames this process wrote to its sockets (one per event per socket).",
            value=DeliveryCounters.deliveries,
        )


REGISTRY.register(HubCollector())
