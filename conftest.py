"""Test configuration shared by every app.

Markers name the real services a test needs: postgres, redis, kafka, mongo, replica (a PostgreSQL streaming
replica: `scripts/services.sh start replica`). A run is "asked to use" a service when its URL is set
(DATABASE_URL=postgres://..., REDIS_URL, KAFKA_BOOTSTRAP_SERVERS, MONGODB_URI, DATABASE_REPLICA_URL):
then the service must answer, or the whole run stops with an error before any test (never a silent skip).
A run without a service's URL (the embedded-default run) deselects the tests that need it, and says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from core.replica import ReplicaReads
from core.testing import ReplicaControl, ServerProcess, port_answers

SERVICE_MARKERS = ("postgres", "redis", "kafka", "mongo", "replica")
# Tests that pin the embedded database itself (SQLite's locking): run only where the database is SQLite.
EMBEDDED_MARKERS = ("sqlite",)


def configured_services() -> dict[str, tuple[str, int]]:
    """service -> (host, port) for each service this run is asked to use."""
    found: dict[str, tuple[str, int]] = {}
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        found["postgres"] = (db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432))
    replica = settings.DATABASES.get("replica")
    if replica is not None:
        found["replica"] = (replica.get("HOST") or "127.0.0.1", int(replica.get("PORT") or 5432))
    if settings.REDIS_URL:
        parts = urlsplit(settings.REDIS_URL)
        found["redis"] = (parts.hostname or "127.0.0.1", parts.port or 6379)
    if settings.KAFKA_BOOTSTRAP_SERVERS:
        host, _, port = settings.KAFKA_BOOTSTRAP_SERVERS.split(",")[0].rpartition(":")
        found["kafka"] = (host or "127.0.0.1", int(port or 9092))
    if settings.MONGODB_URI:
        parts = urlsplit(settings.MONGODB_URI)
        found["mongo"] = (parts.hostname or "127.0.0.1", parts.port or 27017)
    return found


def pytest_configure(config: pytest.Config) -> None:
    for name in SERVICE_MARKERS:
        config.addinivalue_line("markers", f"{name}: needs the real {name} service (its URL must be set)")
    config.addinivalue_line("markers", "sqlite: pins SQLite behaviour; deselected when DATABASE_URL is set")
    config.addinivalue_line("markers", "browser: drives headless Chromium through Playwright")
    config.addinivalue_line("markers", "soak: long-running; only in the soak run")
    config.addinivalue_line(
        "markers",
        "cluster: drives scripts/netcluster (root, network namespaces, HAProxy, PgBouncer, Sentinel); only in"
        " the cluster run (-m cluster), a separate step of scripts/test",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    down = [
        f"{name} at {host}:{port}"
        for name, (host, port) in configured_services().items()
        if not port_answers(host, port, timeout=2.0)
    ]
    if down:
        pytest.exit(
            "services this run was asked to use do not answer: "
            + ", ".join(down)
            + " (start them: scripts/services.sh start)",
            returncode=3,
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    available = set(configured_services())
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        available.add("sqlite")
    # Soak and cluster tests run only when asked for by marker (`-m soak`, `-m cluster`): one is long, the
    # other starts a cluster of eight processes in network namespaces (its own step in scripts/test).
    markexpr = config.getoption("markexpr", "") or ""
    asked = {name for name in ("soak", "cluster") if name in markexpr}
    keep, drop = [], []
    for item in items:
        needed = {m.name for m in item.iter_markers() if m.name in SERVICE_MARKERS + EMBEDDED_MARKERS}
        only_if_asked = {name for name in ("soak", "cluster") if item.get_closest_marker(name) is not None}
        (keep if needed <= available and only_if_asked <= asked else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str:
    services = configured_services()
    missing = [m for m in SERVICE_MARKERS if m not in services]
    line = "real services: " + (", ".join(sorted(services)) or "none (embedded defaults)")
    if missing:
        line += f"; tests needing {', '.join(missing)} are deselected in this run"
    return line


@pytest.fixture(autouse=True)
def _pool_connections_given_back() -> Iterator[None]:
    """After each test, a PostgreSQL pool that has connections still checked out is replaced.

    A test that runs ORM work on a thread that then dies without closing its connection (asgiref's
    sync_to_async on a loop that asyncio.run then closes, a plain threading.Thread) leaves that connection
    checked out of the process's pool for good; over a long suite that ran the pool (16) dry and later tests
    timed out waiting for a connection. The servers the tests start are other processes: unaffected."""
    yield
    from django.db import connections

    connection = connections["default"]
    pool = getattr(type(connection), "_connection_pools", {}).get(connection.alias)
    if pool is None:
        return
    stats = pool.get_stats()
    if stats.get("pool_size", 0) - stats.get("pool_available", 0) > 1:  # more than this thread's own
        connection.close()
        connection.close_pool()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    """The replica alias is Django's test mirror of default (TEST MIRROR: the test database is created on
    the primary only), which points this thread's replica connection at the primary. The streaming replica
    holds the same test database by replication: point the alias there, for every thread."""
    from django.db import connections

    if "replica" not in settings.DATABASES:
        return
    test_name = connections["default"].settings_dict["NAME"]
    shared = connections.settings["replica"]  # what every thread's replica connection is made from
    shared["NAME"] = test_name
    connections["replica"].close()
    connections["replica"].settings_dict = shared
    # The test database was just dropped and created again on the primary. Until the replica has replayed
    # that (it waits for its own sessions on the old copy, up to max_standby_streaming_delay), it still
    # serves the previous run's rows under the same ids: every test starts after it caught up.
    with django_db_blocker.unblock():
        ReplicaControl().catch_up()


@pytest.fixture(autouse=True)
def _replica_reads_only_in_replica_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Replica-safe reads use the replica only in tests marked `replica` (see core.replica.ReplicaReads)."""
    ReplicaReads.enabled = request.node.get_closest_marker("replica") is not None
    yield
    ReplicaReads.enabled = True


@pytest.fixture
def streaming_replica(transactional_db: None) -> Iterator[ReplicaControl]:
    """The streaming replica holding this test's committed rows; replay resumed afterwards whatever happened.
    Mark the test `@pytest.mark.django_db(transaction=True, databases=["default", "replica"])`."""
    control = ReplicaControl()
    control.catch_up()
    try:
        yield control
    finally:
        control.resume()


@pytest.fixture(autouse=True)
def _isolated_cache() -> Iterator[None]:
    """Rate-limit counters and denylist entries from one test never leak into the next."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def server_factory(transactional_db: None) -> Iterator[object]:
    """Start real ChatTalk server processes against the test database: server_factory(env={...})."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str] | None = None, name: str = "web") -> ServerProcess:
        server = ServerProcess(env=env, name=name).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def live_server_process(server_factory: object) -> ServerProcess:
    return server_factory()  # type: ignore[operator]


@pytest.fixture
def ws_connect(transactional_db: None) -> Iterator[object]:
    """Open sockets on the ASGI application inside the test's process (Channels' WebsocketCommunicator):
    `await ws_connect(path, token=None, headers=(), subprotocols=None)` -> a connected communicator.
    For socket behaviour that needs no second process; each test gets a fresh hub."""
    from channels.testing import WebsocketCommunicator

    from chattalk_project.asgi import application
    from realtime.hub import reset_hub_for_tests

    async def connect(
        path: str, token: str | None = None, headers: list[tuple[bytes, bytes]] | None = None, subprotocols: Any = None
    ) -> WebsocketCommunicator:
        if token:
            path += ("&" if "?" in path else "?") + f"access_token={token}"
        communicator = WebsocketCommunicator(application, path, headers=headers or [], subprotocols=subprotocols)
        connected, subprotocol = await communicator.connect(timeout=10)
        assert connected, f"{path} was refused before accept"
        communicator.subprotocol = subprotocol
        return communicator

    reset_hub_for_tests()
    yield connect
    reset_hub_for_tests()
