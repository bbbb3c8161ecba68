"""GET /metrics: the Prometheus text exposition, through prometheus-client's registry.

Apps register what they measure where the state lives: `REGISTRY.register(collector)` for a custom
collector (realtime: sockets and deliveries; presence: its store's state; events: the outbox backlog), or a
prometheus-client metric created on `REGISTRY`. Collectors are called in a worker thread at scrape time, so
they read only plain numbers (no iteration over structures the event loop is changing) or the database.

Numbers are per process (each ASGI process has its own hub and sockets): scrape every process. With
PROMETHEUS_MULTIPROC_DIR set, prometheus-client's multi-process mode also merges the counters and histograms
of every process on the host into each answer.

Protection: with METRICS_TOKEN set, only `Authorization: Bearer <METRICS_TOKEN>` is served. Without it, only
a direct request from the loopback address is served, and not one that came through a proxy (one carrying
X-Forwarded-For, Forwarded or X-Real-IP), since a proxy on the same host makes every client look local.
Everyone else gets 404, so the endpoint does not advertise itself.
"""

from __future__ import annotations

import hmac
import os

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .errors import error_body

CONTENT_TYPE = CONTENT_TYPE_LATEST
LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")

# The project's own registry (not prometheus-client's global one): tests and imports cannot collide with
# another library's metrics, and this module decides what a scrape contains.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)


MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def registry_for_metrics() -> CollectorRegistry | None:
    """Where a prometheus-client metric (Counter, Histogram) registers: nowhere in multi-process mode,
    where its values are written to PROMETHEUS_MULTIPROC_DIR and merged at scrape time instead."""
    return None if MULTIPROCESS else REGISTRY


def render() -> bytes:
    if MULTIPROCESS:
        merged = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(merged)
        return generate_latest(REGISTRY) + generate_latest(merged)
    return generate_latest(REGISTRY)


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
    if not may_read_metrics(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return HttpResponse(await sync_to_async(render)(), content_type=CONTENT_TYPE)
