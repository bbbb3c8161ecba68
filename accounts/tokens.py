"""Access-token revocation: a denylist by jti in the shared cache, kept until the token would expire anyway.

Refresh tokens are revoked by simplejwt's blacklist (database); access tokens are stateless, so logout puts
their jti here. With REDIS_URL set the cache is Redis, so every process sees the revocation at once.
"""

from __future__ import annotations

import time

from django.core.cache import cache

DENYLIST_PREFIX = "jwt-deny:"
USER_CUTOFF_PREFIX = "jwt-user-cutoff:"


def revoke_access_jti(jti: str, expires_at: float) -> None:
    ttl = max(1, int(expires_at - time.time()) + 5)
    cache.set(DENYLIST_PREFIX + jti, 1, timeout=ttl)


def is_access_jti_revoked(jti: str | None) -> bool:
    return bool(jti) and cache.get(DENYLIST_PREFIX + str(jti)) is not None


def revoke_all_tokens_issued_before(user_id: int, cutoff: float, ttl_seconds: int) -> None:
    """Every access token of the user issued before `cutoff` is refused (deactivation, password change)."""
    cache.set(USER_CUTOFF_PREFIX + str(user_id), cutoff, timeout=ttl_seconds)


def is_token_before_user_cutoff(user_id: int, issued_at: float | None) -> bool:
    cutoff = cache.get(USER_CUTOFF_PREFIX + str(user_id))
    return cutoff is not None and (issued_at is None or issued_at <= float(cutoff))


def access_token_is_revoked(user_id: int, jti: str | None, issued_at: float | None) -> bool:
    return is_access_jti_revoked(jti) or is_token_before_user_cutoff(user_id, issued_at)
