"""Throttles of login and signup, per client IP and per username, and of password changes per user,
counted in the shared cache.

With REDIS_URL the counters live in Redis, so a guesser spreading attempts over processes is still counted
once. Rates are REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]; RATE_LIMITS=off (load tests) turns them all off.
A refusal is a 429 with the contract's body (`rate_limited`) and a Retry-After header.

The client address is REMOTE_ADDR (DRF's NUM_PROXIES is 0): X-Forwarded-For is never read here. The server
(scripts/serve) already put the forwarded address in REMOTE_ADDR when, and only when, the connection came from
one of settings.TRUSTED_PROXIES, so a client cannot choose the address it is counted by.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from core.rate_limits import Rate, count_in_window


class _AuthThrottle(SimpleRateThrottle):
    """DRF's rate throttle counted by core.rate_limits (an atomic counter per fixed window)
    instead of DRF's read-modify-write history, so that a burst of concurrent attempts cannot slip past."""

    seconds_to_wait: float = 0.0

    def get_rate(self) -> str | None:
        # Read at call time (not at import, as DRF does), so that settings overrides apply.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request: Request, view: Any) -> bool:
        if not settings.RATE_LIMITS_ENABLED or self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        wait = count_in_window(key, Rate(self.num_requests, self.duration))
        self.seconds_to_wait = wait or 0.0
        return wait is None

    def wait(self) -> float:
        return max(1.0, self.seconds_to_wait)


class _PerIPThrottle(_AuthThrottle):
    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class _PerUsernameThrottle(_AuthThrottle):
    """Counts attempts on one account from anywhere: what stops a password guesser using many IPs."""

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        data = request.data
        username = data.get("username") if isinstance(data, dict) else None
        if not isinstance(username, str) or not username:
            return None  # nothing to count by; the per-IP throttle still applies
        digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
        return self.cache_format % {"scope": self.scope, "ident": digest}


class LoginIPThrottle(_PerIPThrottle):
    scope = "login_ip"


class LoginUsernameThrottle(_PerUsernameThrottle):
    scope = "login_username"


class SignupIPThrottle(_PerIPThrottle):
    scope = "signup_ip"


class SignupUsernameThrottle(_PerUsernameThrottle):
    scope = "signup_username"


class PasswordChangeUserThrottle(_AuthThrottle):
    """Password changes per authenticated user: each one checks a guess of the current password."""

    scope = "password_change_user"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user_id = getattr(request.user, "pk", None)
        return self.cache_format % {"scope": self.scope, "ident": user_id} if user_id else None


LOGIN_THROTTLES = (LoginIPThrottle, LoginUsernameThrottle)
SIGNUP_THROTTLES = (SignupIPThrottle, SignupUsernameThrottle)


class _FormAttempt:
    """What the throttles read of a request (its META and the username), for the server-rendered forms,
    whose form-encoded bodies DRF's JSON-only parsers would not read."""

    def __init__(self, request: Any, username: str):
        self.META = request.META
        self.headers = request.headers
        self.data = {"username": username}


def form_throttle_wait(request: Any, throttles: tuple[type[_AuthThrottle], ...], username: str) -> float | None:
    """The same limits as the REST login/signup, for the pages: seconds to wait, or None when allowed."""
    attempt = _FormAttempt(request, username)
    waits = []
    for throttle_class in throttles:
        throttle = throttle_class()
        if not throttle.allow_request(attempt, None):  # type: ignore[arg-type]
            waits.append(throttle.wait())
    return max(waits) if waits else None
