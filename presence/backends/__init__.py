"""The presence store, chosen by settings.PRESENCE_BACKEND ("mongo" when MONGODB_URI is set, else "orm")."""

from __future__ import annotations

import threading

from django.conf import settings

from .base import ConnectionRecord, PresenceBackend, PresenceUnavailable, RoomUserState

__all__ = ["ConnectionRecord", "PresenceBackend", "PresenceUnavailable", "RoomUserState", "get_presence_backend"]

_backend: PresenceBackend | None = None
_lock = threading.Lock()


def build_backend(name: str) -> PresenceBackend:
    if name == "mongo":
        from .mongo import MongoPresenceBackend

        return MongoPresenceBackend(settings.MONGODB_URI)
    if name == "orm":
        from .orm import OrmPresenceBackend

        return OrmPresenceBackend()
    raise ValueError(f"unknown PRESENCE_BACKEND {name!r}")


def get_presence_backend() -> PresenceBackend:
    """The process's store (one client, one connection pool), made on first use."""
    global _backend
    if _backend is None:
        with _lock:
            if _backend is None:
                _backend = build_backend(settings.PRESENCE_BACKEND)
    return _backend


def set_presence_backend_for_tests(backend: PresenceBackend | None) -> None:
    global _backend
    _backend = backend
