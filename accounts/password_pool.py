"""Where password hashes run: a bounded pool of threads that runs hashes and nothing else, behind a gate
that lets a few login, signup and password-change requests in at a time.

Why: a password hash costs CPU by design (Argon2id about 42 ms, a stored PBKDF2 hash until its login
upgrades it about ten times more: docs/BENCHMARKS.md, "Password hashing"). Under ASGI, Django runs each
sync view in a thread of its own, so a storm of 100 logins would mean 100 threads hashing at once: every
login would finish only at the end of the storm, and the event loop (every WebSocket of the process) would
share two cores with 100 CPU-bound threads. The hashers (accounts/hashers.py) hand each hash to this pool
instead, so hashes queue here, first come first served, on at most PASSWORD_HASH_WORKERS threads (cores - 1
by default; argon2-cffi and hashlib release the GIL while they hash, but a memory-hard hash on every core
slowed everything else of the machine more than it sped up logins: docs/BENCHMARKS.md, "Login ramp").

Only the hash runs here. The rest of a login (DRF parsing, the user lookup, the session, the tokens) stays
on the request's own thread. When this pool ran whole login views, its one thread spent about half of each
login on that Python and database work, stretched further by waiting for the GIL, and a storm queued
behind it (docs/BENCHMARKS.md, "Login ramp").

While a thread waits for its hash it gives its database connection back to the pool (when it is outside
any transaction): a login queued behind others must not keep one of the process's few pooled connections
from the room lists and sends of users already logged in.

The pool's threads run at a lower CPU priority (PASSWORD_HASH_NICE; Linux sets nice per thread): they use
every core nobody else wants, but the event loop and the other requests' threads come first.

Turns (`takes_password_turn`, PASSWORD_VIEW_CONCURRENCY) bound the requests of those views that run at
once. Without them, a storm of 999 logins was 999 threads doing their lookups and sessions alongside the
room lists of users already in, sharing the GIL and the connection pool with them; with them the others
wait on the event loop before Django (core.turns.TurnGate), in order, holding no thread and no connection,
and a request whose client went away leaves the queue without costing a hash.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.conf import settings
from django.db import connections
from django.http import HttpResponse

logger = logging.getLogger(__name__)

T = TypeVar("T")

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _lower_priority() -> None:
    """Runs in each pool thread as it starts. On Linux setpriority(PRIO_PROCESS, tid) applies to that one
    thread; elsewhere (or without permission) the thread keeps the normal priority."""
    nice = settings.PASSWORD_HASH_NICE
    if nice <= 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError) as exc:  # pragma: no cover - not Linux
        logger.warning("password hash threads keep the normal CPU priority: %s", exc)


def password_executor() -> ThreadPoolExecutor:
    """Created on first use, in the serving process (never inherited across a fork)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.PASSWORD_HASH_WORKERS,
                thread_name_prefix="password-hash",
                initializer=_lower_priority,
            )
        return _executor


def release_idle_connections() -> None:
    """Give this thread's pooled database connections back while it waits: only those outside a
    transaction (closing inside one would roll it back), and only with a connection pool (without one,
    closing would mean reconnecting afterwards)."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is None or connection.in_atomic_block:
            continue
        if getattr(connection, "pool", None) is None:
            continue
        connection.close()


def run_hash(function: Callable[..., T], *args: object) -> T:
    """Run one password hash (or verification) on the pool and wait for it on this thread.

    With PASSWORD_HASH_WORKERS = 0 (the pytest process, whose test transaction lives on one thread) it runs
    here. Called from the pool itself (a hasher that hashes twice, as PBKDF2's harden_runtime does), it runs
    here too rather than wait for a slot it may be holding.
    """
    if settings.PASSWORD_HASH_WORKERS <= 0 or threading.current_thread().name.startswith("password-hash"):
        return function(*args)
    release_idle_connections()
    return password_executor().submit(function, *args).result()


# --- turns for the views that hash --------------------------------------------------------------------
PASSWORD_TURN = "takes_password_turn"


def takes_password_turn(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Marks a view that hashes a password: its POSTs wait for one of PASSWORD_VIEW_CONCURRENCY turns on the
    event loop before Django runs them (core.turns.TurnGate, wired in chattalk_project/asgi.py)."""
    setattr(view, PASSWORD_TURN, True)
    return view


def password_turns() -> int:
    """How many requests of the views that hash run at once; 0 (no gate) when hashes run on the caller's
    thread (PASSWORD_HASH_WORKERS=0, as in tests) or the limit is off."""
    if settings.PASSWORD_HASH_WORKERS <= 0:
        return 0
    return max(0, settings.PASSWORD_VIEW_CONCURRENCY)
