"""How a socket was authenticated, as the auth middleware (accounts.ws_auth) leaves it in the scope.

Declared here, below accounts, so that sockets and the hub can read it without knowing who fills it in.
"""

from __future__ import annotations

from dataclasses import dataclass

UNAVAILABLE = "unavailable"  # the credential could not be checked now: the socket closes with 1013, not 4401


@dataclass(frozen=True)
class SocketAuth:
    """`expires_at` (epoch seconds) bounds a socket's life; `error` says why a presented credential was refused."""

    method: str  # "token" | "session" | "none"
    jti: str | None = None  # the access token's jti, or the session's revocation id
    expires_at: float | None = None
    error: str | None = None
    issued_at: float | None = None  # the access token's iat, for per-user cutoffs
    session_key: str | None = None  # session sockets: re-checked periodically
    generation: int | None = None  # token sockets: the token's credential generation (a password change moves it)
    family: str | None = None  # token sockets: the token's family (a reused refresh token revokes it)


ANONYMOUS = SocketAuth("none", error="not_authenticated")
