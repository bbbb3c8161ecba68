"""Where presence lives in this process, for /metrics (degraded: the store failed and chat carries on)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core.metrics import REGISTRY

from .tracker import current_tracker


class PresenceCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        tracker = current_tracker()
        degraded = bool(tracker is not None and tracker.degraded)
        since = tracker.degraded_since if tracker is not None else None
        info = GaugeMetricFamily(
            "chattalk_presence_backend_info", "The presence store in use (label backend).", labels=["backend"]
        )
        info.add_metric([settings.PRESENCE_BACKEND], 1)
        yield info
        yield GaugeMetricFamily(
            "chattalk_presence_degraded",
            "1 while this process cannot reach the presence store (chat continues; presence reconciles later).",
            value=1 if degraded else 0,
        )
        yield GaugeMetricFamily(
            "chattalk_presence_degraded_seconds",
            "How long presence has been degraded on this process; 0 when healthy.",
            value=round(time.monotonic() - since, 3) if degraded and since is not None else 0,
        )


REGISTRY.register(PresenceCollector())
