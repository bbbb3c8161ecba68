"""A bounded pool of threads for the views that hash passwords (login, signup).

Why: a password hash costs CPU by design (Argon2id, and a stored PBKDF2 hash until its login upgrades it,
about ten times more: docs/BENCHMARKS.md, "Password hashing"). Under ASGI, Django runs each sync view in a thread of its own, so a
storm of 100 logins means 100 threads hashing at once: every login finishes only at the end of the storm,
and the event loop (every WebSocket of the process) has to share two cores with 100 CPU-bound threads.
argon2-cffi and hashlib release the GIL while they hash, so a pool with one thread per core hashes on
every core, makes the storm queue (first come, first served, each login done in its turn), and leaves the
event loop and the other views' threads their share of the CPU. The pool is used by nothing else, so chat
sends (which run on the loop's default executor) never wait behind a password hash.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.http import HttpRequest, HttpResponse

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def password_executor() -> ThreadPoolExecutor:
    """Created on first use, in the serving process (never inherited across a fork)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.PASSWORD_HASH_WORKERS, thread_name_prefix="password-hash"
            )
        return _executor


def on_password_pool(view: Callable[..., HttpResponse]) -> Callable[..., Any]:
    """Turn a sync view into an async one that runs the whole view on the password pool.

    The view keeps its DRF parsing, throttling and error handling; database connections of the pool's
    threads are opened and closed as in any worker thread (DatabaseSyncToAsync).
    """

    @functools.wraps(view)
    async def pooled(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if settings.PASSWORD_HASH_WORKERS <= 0:
            # No pool (the pytest process): run where a sync view runs, on the request's own thread.
            return await sync_to_async(view)(request, *args, **kwargs)
        run = DatabaseSyncToAsync(view, thread_sensitive=False, executor=password_executor())
        return await run(request, *args, **kwargs)

    pooled.csrf_exempt = getattr(view, "csrf_exempt", False)  # type: ignore[attr-defined]
    return pooled
