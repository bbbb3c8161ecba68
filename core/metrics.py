"""GET /metrics: this process's numbers in the Prometheus text exposition format (version 0.0.4).

Why hand-written: a handful of gauges, two counters and one histogram do not justify a dependency, and the
state they report already lives in the hub, the presence tracker and the outbox. Every number is *per
process* (each ASGI process has its own hub and sockets): scrape every process, and sum in Prometheus
(`sum(chattalk_open_sockets)`, `sum(rate(chattalk_deliveries_total[1m]))`). The outbox figures are read
from the shared database, so every process reports the same backlog.

Protection: with METRICS_TOKEN set, only `Authorization: Bearer <METRICS_TOKEN>` is served. Without it, only
a direct request from the loopback address is served, and not one that came through a proxy (one carrying
X-Forwarded-For, Forwarded or X-Real-IP), since a proxy on the same host makes every client look local.
Everyone else gets 404, so the endpoint does not advertise itself.
"""

from __future__ import annotations

import bisect
import hmac
import logging
import math
import os
import resource
import time
from collections.abc import Iterable, Sequence
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from core.errors import error_body

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")
PROCESS_STARTED_AT = time.time()


class Histogram:
    """A cumulative-bucket histogram of one unlabelled series; observe() is O(log buckets), no locks: it is
    only called from the event loop of its process."""

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]):
        self.name = name
        self.help_text = help_text
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)  # the last slot is +Inf only
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def exposition(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} histogram"]
        cumulative = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            cumulative += count
            lines.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {cumulative}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{self.name}_sum {_number(self.sum)}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


# Observed by messaging.hub.RoomStream when it hands a message to this process's sockets: the time since the
# message's created_at (set in the sending transaction). Across machines it includes their clock skew.
SEND_TO_DELIVERY_SECONDS = Histogram(
    "chattalk_send_to_delivery_seconds",
    "Time from a message's created_at to this process's hub handing it to its local sockets.",
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def metric(name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]] | float) -> list[str]:
    """One metric family: HELP, TYPE and its samples (a bare number is one unlabelled sample)."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    if isinstance(samples, (int, float)):
        samples = [({}, samples)]
    for labels, value in samples:
        label_text = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
        lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}")
    return lines


# --- what is measured -----------------------------------------------------------------------------------
def socket_lines() -> list[str]:
    """Open sockets and delivery counters of this process's hub (zeros before the first socket)."""
    from messaging import hub as hub_module
    from presence import consumers as presence_consumers

    hub = hub_module._hub
    chat = sum(len(stream.listeners) for stream in hub.rooms.values()) if hub is not None else 0
    presence = sum(len(feed.sockets) for feed in presence_consumers._feeds.values())
    rooms = len(hub.rooms) if hub is not None else 0
    return [
        *metric(
            "chattalk_open_sockets",
            "gauge",
            "WebSocket connections open on this process.",
            [({"kind": "chat"}, chat), ({"kind": "presence"}, presence)],
        ),
        *metric("chattalk_hub_rooms", "gauge", "Rooms with at least one socket on this process.", rooms),
        *metric(
            "chattalk_messages_total",
            "counter",
            "Room messages this process's hub put in seq order and handed to its sockets (once per message).",
            getattr(hub, "messages", 0) if hub is not None else 0,
        ),
        *metric(
            "chattalk_deliveries_total",
            "counter",
            "Message frames this process wrote to its sockets (one per message per socket).",
            hub.deliveries if hub is not None else 0,
        ),
        *SEND_TO_DELIVERY_SECONDS.exposition(),
    ]


def presence_lines() -> list[str]:
    """Where presence lives in this process (tracker.degraded: the store failed and chat carries on)."""
    from presence import tracker as tracker_module

    tracker = tracker_module._tracker
    degraded = bool(tracker is not None and tracker.degraded)
    since = tracker.degraded_since if tracker is not None and tracker.degraded_since is not None else None
    return [
        *metric(
            "chattalk_presence_backend_info",
            "gauge",
            "The presence store in use (label backend).",
            [({"backend": settings.PRESENCE_BACKEND}, 1)],
        ),
        *metric(
            "chattalk_presence_degraded",
            "gauge",
            "1 while this process cannot reach the presence store (chat continues; presence reconciles later).",
            1 if degraded else 0,
        ),
        *metric(
            "chattalk_presence_degraded_seconds",
            "gauge",
            "How long presence has been degraded on this process; 0 when healthy.",
            round(time.monotonic() - since, 3) if since is not None else 0,
        ),
    ]


def _outbox() -> dict[str, Any]:
    from events.services import outbox_backlog

    return outbox_backlog()


async def outbox_lines() -> list[str]:
    try:
        backlog = await sync_to_async(_outbox)()
    except Exception:  # noqa: BLE001 - a scrape must answer while the database is away
        logger.warning("metrics: the outbox backlog could not be read", exc_info=True)
        return metric("chattalk_outbox_readable", "gauge", "0 when the outbox could not be read.", 0)
    return [
        *metric("chattalk_outbox_readable", "gauge", "0 when the outbox could not be read.", 1),
        *metric("chattalk_outbox_pending", "gauge", "Outbox events not yet relayed to Kafka.", backlog["pending"]),
        *metric(
            "chattalk_outbox_oldest_age_seconds",
            "gauge",
            "Age of the oldest event not yet relayed; 0 when the outbox is empty.",
            backlog["oldest_age_seconds"],
        ),
    ]


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the peak, where /proc is missing


def process_lines() -> list[str]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return [
        *metric("chattalk_process_info", "gauge", "This process (label pid).", [({"pid": str(os.getpid())}, 1)]),
        *metric("process_cpu_seconds_total", "counter", "User and system CPU time.", usage.ru_utime + usage.ru_stime),
        *metric("process_resident_memory_bytes", "gauge", "Resident memory now.", _resident_bytes()),
        *metric("process_start_time_seconds", "gauge", "Start time since the Unix epoch.", PROCESS_STARTED_AT),
    ]


# --- the endpoint -------------------------------------------------------------------------------------------
def may_read_metrics(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    if any(header in request.META for header in PROXY_HEADERS):
        return False
    return request.META.get("REMOTE_ADDR", "") in LOOPBACK_ADDRESSES


@require_GET
async def metrics(request: HttpRequest) -> HttpResponse:
    """Async on purpose: the hub's state is read on the event loop that changes it, never from a thread."""
    if not may_read_metrics(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    lines = [*socket_lines(), *presence_lines(), *await outbox_lines(), *process_lines()]
    return HttpResponse("\n".join(lines) + "\n", content_type=CONTENT_TYPE)
