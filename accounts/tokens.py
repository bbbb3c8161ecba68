"""Token revocation: what makes logout and deactivation real although access tokens are stateless JWTs.

- Refresh tokens: simplejwt's blacklist (database). Rotation blacklists the old one; logout blacklists the
  one presented; deactivation blacklists every outstanding one of the user.
- Access tokens: a denylist by jti in the shared cache, kept until the token would expire anyway (logout),
  and a per-user cutoff time: every access token issued at or before it is refused (deactivation).
With REDIS_URL set the cache is Redis, so every process sees a revocation at once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.signals import setting_changed
from django.dispatch import receiver

from core.domain import ServiceUnavailable
from realtime.frames import CLOSE_NOT_AUTHENTICATED
from realtime.watch import SocketSnapshot

DENYLIST_PREFIX = "jwt-deny:"
USER_CUTOFF_PREFIX = "jwt-user-cutoff:"
# Sockets opened with a session cookie carry this id instead of a jti, so a logout can close them too.
SESSION_SOCKET_PREFIX = "session:"


_shared_cache: BaseCache | None = None


def denylist_cache() -> BaseCache:
    """One cache client for the whole process.

    `django.core.cache.cache` is context-local: every WebSocket's context would build and keep its own
    Redis client for as long as the socket lives, a large part of an idle socket's memory. The backends are thread-safe (django-redis pools its connections), so one instance serves
    every thread and every socket.
    """
    global _shared_cache
    if _shared_cache is None:
        _shared_cache = caches.create_connection("default")
    return _shared_cache


@receiver(setting_changed)
def _forget_shared_cache(setting: str, **kwargs: object) -> None:
    global _shared_cache
    if setting == "CACHES":
        _shared_cache = None


def access_lifetime() -> timedelta:
    return settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]


def revoke_access_jti(jti: str, expires_at: float) -> None:
    """Refuse one access token until it expires on its own (plus a margin for clock skew)."""
    ttl = max(1, int(expires_at - time.time()) + 5)
    denylist_cache().set(DENYLIST_PREFIX + jti, 1, timeout=ttl)


def is_access_jti_revoked(jti: str | None) -> bool:
    return bool(jti) and denylist_cache().get(DENYLIST_PREFIX + str(jti)) is not None


def revoke_all_tokens_issued_before(user_id: int, cutoff: float, ttl_seconds: int | None = None) -> None:
    """Every access token of the user issued at or before `cutoff` is refused (deactivation).

    The entry only has to outlive the longest-lived access token issued before the cutoff.
    """
    if ttl_seconds is None:
        ttl_seconds = int(access_lifetime().total_seconds()) + 60
    denylist_cache().set(USER_CUTOFF_PREFIX + str(user_id), cutoff, timeout=ttl_seconds)


def is_token_before_user_cutoff(user_id: int, issued_at: float | None) -> bool:
    cutoff = denylist_cache().get(USER_CUTOFF_PREFIX + str(user_id))
    return cutoff is not None and (issued_at is None or float(issued_at) <= float(cutoff))


def access_token_is_revoked(user_id: int, jti: str | None, issued_at: float | None) -> bool:
    """Fails closed: when the denylist cannot be read, nobody is let in on a token (503 / close 1013),
    since a logged-out token must never work just because Redis blinked."""
    try:
        return is_access_jti_revoked(jti) or is_token_before_user_cutoff(user_id, issued_at)
    except Exception as exc:  # noqa: BLE001 - any cache failure: redis-py's errors are not one class
        raise ServiceUnavailable("The token denylist cannot be read; retry shortly.") from exc


def blacklist_outstanding_refresh_tokens(user_id: int) -> int:
    """Blacklist every refresh token of the user that is not blacklisted yet; returns how many."""
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

    pending = OutstandingToken.objects.filter(user_id=user_id, blacklistedtoken__isnull=True)
    created = BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=token) for token in pending], ignore_conflicts=True
    )
    return len(created)


def session_socket_id(session_key: str | None) -> str | None:
    """The revocation id of sockets opened with this session (a digest: the key itself is a secret)."""
    if not session_key:
        return None
    return SESSION_SOCKET_PREFIX + hashlib.sha256(session_key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SocketCredential:
    """What a live socket was authenticated with, for the periodic re-check of revocations."""

    user_id: int
    jti: str | None
    issued_at: float | None
    session_key: str | None


def revoked_socket_credentials(credentials: list[SocketCredential]) -> set[int]:
    """Indexes of the credentials that no longer hold: denylisted jti, before the user's cutoff, inactive
    user, or an ended session. Batched (one cache read, two queries) so a process can re-check all of its
    sockets every few seconds; this is what closes a socket whose revocation event was lost in transit."""
    from django.contrib.sessions.models import Session

    from .models import User

    if not credentials:
        return set()
    user_ids = {c.user_id for c in credentials}
    keys = [DENYLIST_PREFIX + c.jti for c in credentials if c.jti] + [USER_CUTOFF_PREFIX + str(u) for u in user_ids]
    cached = denylist_cache().get_many(keys)
    inactive = set(User.objects.filter(pk__in=user_ids, is_active=False).values_list("pk", flat=True))
    inactive |= user_ids - set(User.objects.filter(pk__in=user_ids).values_list("pk", flat=True))
    session_keys = {c.session_key for c in credentials if c.session_key}
    live_sessions: set[str] = set()
    if session_keys and settings.SESSION_ENGINE == "django.contrib.sessions.backends.db":
        from django.utils import timezone

        live_sessions = set(
            Session.objects.filter(session_key__in=session_keys, expire_date__gt=timezone.now()).values_list(
                "session_key", flat=True
            )
        )
    else:
        live_sessions = session_keys
    revoked: set[int] = set()
    for index, credential in enumerate(credentials):
        cutoff = cached.get(USER_CUTOFF_PREFIX + str(credential.user_id))
        if (
            credential.user_id in inactive
            or (credential.jti and DENYLIST_PREFIX + credential.jti in cached)
            or (
                cutoff is not None and credential.issued_at is not None and float(credential.issued_at) <= float(cutoff)
            )
            or (credential.session_key and credential.session_key not in live_sessions)
        ):
            revoked.add(index)
    return revoked


def revoked_sockets(snapshots: Sequence[SocketSnapshot]) -> dict[int, tuple[int, str]]:
    """realtime.watch's re-check of credentials: sockets whose credential no longer holds close with 4401."""
    credentials = [
        SocketCredential(
            user_id=s.user_id,
            jti=s.auth.jti if s.auth is not None else None,
            issued_at=s.auth.issued_at if s.auth is not None else None,
            session_key=s.auth.session_key if s.auth is not None else None,
        )
        for s in snapshots
    ]
    return {index: (CLOSE_NOT_AUTHENTICATED, "token revoked") for index in revoked_socket_credentials(credentials)}
