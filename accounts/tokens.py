"""Token revocation: what makes logout, deactivation and a password change real although access tokens
are stateless JWTs.

- Refresh tokens: simplejwt's blacklist (database). Rotation blacklists the old one; logout blacklists the
  one presented; deactivation and a password change blacklist every outstanding one of the user; reusing a
  rotated one blacklists every outstanding one of its family.
- Access tokens: a denylist by jti in the shared cache, kept until the token would expire anyway (logout);
  a per-user cutoff time: every access token issued at or before it is refused (deactivation); a per-family
  entry: every access token of a family whose refresh token was reused is refused.
- Both carry the user's credential generation (User.credential_generation, moved by a password change):
  a token of an older generation is refused. That check needs no cache: it reads the user row.
With REDIS_URL set the cache is Redis, so every process sees a revocation at once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.core.cache import BaseCache, caches
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from core.domain import ServiceUnavailable
from realtime.frames import CLOSE_NOT_AUTHENTICATED
from realtime.watch import Changes, SocketSnapshot

logger = logging.getLogger(__name__)

DENYLIST_PREFIX = "jwt-deny:"
USER_CUTOFF_PREFIX = "jwt-user-cutoff:"
FAMILY_DENY_PREFIX = "jwt-family-deny:"
# Claims of our refresh tokens, copied into the access tokens made from them.
GENERATION_CLAIM = "gen"  # User.credential_generation at issue; absent (tokens from before it) counts as 0
FAMILY_CLAIM = "fam"  # one id per login, carried through every rotation of its refresh token
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


REPLICA_WAIT_MS = 1000  # how long a revocation waits for a Redis replica to hold it (Sentinel only)


def _store_revocation(key: str, value: object, ttl: int) -> None:
    """Write one denylist entry. Behind Redis Sentinel the write waits (WAIT 1) until a replica holds it:
    replication is asynchronous, and a primary killed just after a logout would otherwise take the entry
    with it, and the promoted replica would accept the logged-out token until it expired. One connection
    carries the SET and the WAIT (WAIT counts only its own connection's writes). When no replica answers in
    REPLICA_WAIT_MS the entry is still on the primary: the logout succeeds, and the gap is logged."""
    cache = denylist_cache()
    if not settings.REDIS_SENTINELS:
        cache.set(key, value, timeout=ttl)
        return
    client = cache.client  # django-redis' client: its key prefix and value encoding, which get_many reads
    with client.get_client(write=True).pipeline(transaction=False) as pipe:
        pipe.set(client.make_key(key), client.encode(value), ex=ttl)
        pipe.wait(1, REPLICA_WAIT_MS)
        _, replicas = pipe.execute()
    if not replicas:
        logger.warning("token revocation: no Redis replica acknowledged it within %s ms", REPLICA_WAIT_MS)


def access_lifetime() -> timedelta:
    return settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]


def revoke_access_jti(jti: str, expires_at: float) -> None:
    """Refuse one access token until it expires on its own (plus a margin for clock skew)."""
    ttl = max(1, int(expires_at - time.time()) + 5)
    _store_revocation(DENYLIST_PREFIX + jti, 1, ttl)


def revoke_all_tokens_issued_before(user_id: int, cutoff: float, ttl_seconds: int | None = None) -> None:
    """Every access token of the user issued at or before `cutoff` is refused (deactivation).

    The entry only has to outlive the longest-lived access token issued before the cutoff.
    """
    if ttl_seconds is None:
        ttl_seconds = int(access_lifetime().total_seconds()) + 60
    _store_revocation(USER_CUTOFF_PREFIX + str(user_id), cutoff, ttl_seconds)


def revoke_family_access_tokens(family: str) -> None:
    """Every access token made from a refresh token of this family is refused until it would expire."""
    _store_revocation(FAMILY_DENY_PREFIX + family, 1, int(access_lifetime().total_seconds()) + 60)


def generation_is_current(token_generation: object, user_generation: int) -> bool:
    return (token_generation if token_generation is not None else 0) == user_generation


def _is_denied(
    cached: dict[str, object], user_id: int, jti: str | None, issued_at: float | None, family: str | None
) -> bool:
    """The cache's verdict on one token, from one `get_many` of the keys that `_denylist_keys` names."""
    cutoff = cached.get(USER_CUTOFF_PREFIX + str(user_id))
    return bool(
        (jti and DENYLIST_PREFIX + jti in cached)
        or (family and FAMILY_DENY_PREFIX + family in cached)
        or (cutoff is not None and (issued_at is None or float(issued_at) <= float(cutoff)))  # type: ignore[arg-type]
    )


def _denylist_keys(user_id: int, jti: str | None, family: str | None) -> list[str]:
    keys = [USER_CUTOFF_PREFIX + str(user_id)]
    if jti:
        keys.append(DENYLIST_PREFIX + jti)
    if family:
        keys.append(FAMILY_DENY_PREFIX + family)
    return keys


def access_token_is_revoked(user_id: int, jti: str | None, issued_at: float | None, family: str | None = None) -> bool:
    """One cache round trip. Fails closed: when the denylist cannot be read, nobody is let in on a token
    (503 / close 1013), since a logged-out token must never work just because Redis blinked."""
    jti = str(jti) if jti else None
    family = str(family) if family else None
    try:
        cached = denylist_cache().get_many(_denylist_keys(user_id, jti, family))
    except Exception as exc:  # noqa: BLE001 - any cache failure: redis-py's errors are not one class
        raise ServiceUnavailable("The token denylist cannot be read; retry shortly.") from exc
    return _is_denied(cached, user_id, jti, issued_at, family)


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
    generation: int | None = None  # token sockets: the token's credential generation
    family: str | None = None  # token sockets: the token's family


def _session_data(session_keys: set[str]) -> dict[str, dict[str, Any]]:
    """The decoded data of each session that still exists and has not expired."""
    engine = import_module(settings.SESSION_ENGINE)
    if settings.SESSION_ENGINE == "django.contrib.sessions.backends.db":
        from django.contrib.sessions.models import Session

        store = engine.SessionStore()
        rows = Session.objects.filter(session_key__any=list(session_keys), expire_date__gt=timezone.now()).values_list(
            "session_key", "session_data"
        )
        return {key: store.decode(data) for key, data in rows}
    found = {}
    for key in session_keys:  # other engines: one load each (a cache read, or the cookie itself)
        data = engine.SessionStore(session_key=key).load()
        if data:
            found[key] = data
    return found


def session_belongs_to(data: dict[str, Any] | None, user: Any) -> bool:
    """Django's own test of a session (django.contrib.auth.get_user): it names this user and carries the
    user's current session auth hash (or one of its accepted fallbacks). A password change makes every
    other session fail it (accounts.models.User.get_session_auth_hash)."""
    if not data or str(data.get(SESSION_KEY)) != str(user.pk):
        return False
    session_hash = data.get(HASH_SESSION_KEY)
    if not isinstance(session_hash, str) or not session_hash:
        return False
    return constant_time_compare(session_hash, user.get_session_auth_hash()) or any(
        constant_time_compare(session_hash, fallback) for fallback in user.get_session_auth_fallback_hash()
    )


def revoked_socket_credentials(credentials: list[SocketCredential]) -> set[int]:
    """Indexes of the credentials that no longer hold: an inactive user; for a token socket a denylisted
    jti or family, a token from before the user's cutoff or from an older credential generation; for a
    session socket a session that ended or no longer carries the user's current auth hash (the password
    changed). Batched (one cache read, two queries, each list of ids one parameter) so a process can
    re-check thousands of sockets at once; this is what closes a socket whose revocation event was lost."""
    from .models import User

    if not credentials:
        return set()
    user_ids = {c.user_id for c in credentials}
    keys = {key for c in credentials for key in _denylist_keys(c.user_id, c.jti, c.family)}
    cached = denylist_cache().get_many(list(keys))
    users = {
        user.pk: user
        for user in User.objects.only("pk", "is_active", "password", "credential_generation").filter(
            pk__any=list(user_ids)
        )
    }
    session_keys = {c.session_key for c in credentials if c.session_key}
    sessions = _session_data(session_keys) if session_keys else {}
    revoked: set[int] = set()
    for index, credential in enumerate(credentials):
        user = users.get(credential.user_id)
        if user is None or not user.is_active:
            revoked.add(index)
        elif credential.session_key:
            if not session_belongs_to(sessions.get(credential.session_key), user):
                revoked.add(index)
        elif _is_denied(cached, credential.user_id, credential.jti, credential.issued_at, credential.family) or (
            credential.generation is not None
            and not generation_is_current(credential.generation, user.credential_generation)
        ):
            revoked.add(index)
    return revoked


def mark_credentials_changed(user_id: int) -> None:
    """In the revoking transaction: the user's change marker, which each process's re-check reads
    (credential_changes), so a socket whose close event was lost still closes within one round."""
    from .models import User

    User.objects.filter(pk=user_id).update(credentials_changed_at=timezone.now())


def credential_changes(since: float, _room_ids: Collection[int]) -> Changes:
    """realtime.watch's changes of credentials: the users whose marker moved at or after `since` (one
    indexed query, whatever the number of sockets)."""
    from datetime import UTC, datetime

    from .models import User

    changed_after = datetime.fromtimestamp(since, tz=UTC)
    return Changes(
        user_ids=set(User.objects.filter(credentials_changed_at__gte=changed_after).values_list("pk", flat=True))
    )


def revoked_sockets(snapshots: Sequence[SocketSnapshot]) -> dict[int, tuple[int, str]]:
    """realtime.watch's re-check of credentials: sockets whose credential no longer holds close with 4401."""
    credentials = [
        SocketCredential(
            user_id=s.user_id,
            jti=s.auth.jti if s.auth is not None else None,
            issued_at=s.auth.issued_at if s.auth is not None else None,
            session_key=s.auth.session_key if s.auth is not None else None,
            generation=s.auth.generation if s.auth is not None else None,
            family=s.auth.family if s.auth is not None else None,
        )
        for s in snapshots
    ]
    return {index: (CLOSE_NOT_AUTHENTICATED, "token revoked") for index in revoked_socket_credentials(credentials)}
