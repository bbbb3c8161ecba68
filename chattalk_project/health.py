"""Liveness and readiness.

/healthz answers while the process can serve at all. /readyz asks each configured service and answers 503
when one the deployment depends on is down, so a balancer stops sending traffic to this process. Presence
(MongoDB) is reported as "degraded" rather than down: chat keeps working without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from .settings import redact_url

CHECK_TIMEOUT_SECONDS = 3.0


def check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"backend": connection.vendor}


def check_redis() -> dict[str, Any]:
    import redis

    if settings.REDIS_SENTINELS:  # ask the sentinels for the primary, as the layer and the cache do
        from redis.sentinel import Sentinel

        from .settings import redis_sentinel_target

        name, db, password = redis_sentinel_target(settings.REDIS_URL)
        timeouts = {"socket_connect_timeout": 2, "socket_timeout": 2}
        sentinel = Sentinel(settings.REDIS_SENTINELS, sentinel_kwargs=timeouts, **timeouts)
        client = sentinel.master_for(name, db=db, password=password)
    else:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()
    return {"url": redact_url(settings.REDIS_URL)}


def check_kafka() -> dict[str, Any]:
    from events.kafka import kafka_cluster_answers

    kafka_cluster_answers(timeout=2.0)
    return {"bootstrap": settings.KAFKA_BOOTSTRAP_SERVERS}


def check_mongodb() -> dict[str, Any]:
    from presence.backends import get_presence_backend

    get_presence_backend().ping()
    return {"url": redact_url(settings.MONGODB_URI)}


def configured_checks() -> dict[str, tuple[Callable[[], dict[str, Any]], bool]]:
    """name -> (check, critical). A failing non-critical check makes the service 'degraded', not down."""
    checks: dict[str, tuple[Callable[[], dict[str, Any]], bool]] = {"database": (check_database, True)}
    if settings.REDIS_URL:
        checks["redis"] = (check_redis, True)
    if settings.KAFKA_BOOTSTRAP_SERVERS:
        # The outbox keeps every event while Kafka is away: the web tier stays ready, the relay waits.
        checks["kafka"] = (check_kafka, False)
    if settings.MONGODB_URI:
        checks["mongodb"] = (check_mongodb, False)
    return checks


def _run_check(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        info = check()
        return {"state": "up", "ms": round((time.monotonic() - started) * 1000, 1), **info}
    except Exception as exc:  # noqa: BLE001 - any failure of a dependency means "down", with its reason
        return {"state": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = configured_checks()
    results: dict[str, dict[str, Any]] = {}
    # The database check runs on this thread (Django connections are per thread); the network-only checks
    # run beside it so that one slow service does not add up with the others.
    with ThreadPoolExecutor(max_workers=max(1, len(checks) - 1)) as pool:
        futures = {
            name: pool.submit(_run_check, check) for name, (check, _critical) in checks.items() if name != "database"
        }
        results["database"] = _run_check(checks["database"][0])
        for name, future in futures.items():
            try:
                results[name] = future.result(timeout=CHECK_TIMEOUT_SECONDS)
            except Exception as exc:  # noqa: BLE001
                results[name] = {"state": "down", "error": f"timeout: {exc}"}
    down_critical = [n for n, (_c, critical) in checks.items() if critical and results[n]["state"] != "up"]
    degraded = [n for n, (_c, critical) in checks.items() if not critical and results[n]["state"] != "up"]
    for name in degraded:
        results[name]["state"] = "degraded"
    body: dict[str, Any] = {
        "status": "down" if down_critical else ("degraded" if degraded else "ok"),
        "services": results,
    }
    try:
        from events.services import outbox_backlog

        body["outbox"] = outbox_backlog()
    except Exception as exc:  # noqa: BLE001
        body["outbox"] = {"error": str(exc)[:200]}
    return JsonResponse(body, status=503 if down_critical else 200)
