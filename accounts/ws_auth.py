"""The one WebSocket authentication middleware.

A token comes from the `access_token` query parameter or the subprotocol pair ["chattalk", "bearer.<jwt>"];
without one, the session cookie is used. The result is put in the scope and never refused here: the consumer
accepts and closes with 4401, so that the client sees the code. Only a foreign Origin is refused before accept.
All lookups (user row, denylist) run in one worker-thread call, never in the event loop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from .tokens import session_socket_id

logger = logging.getLogger(__name__)

SUBPROTOCOL = "chattalk"
UNAVAILABLE = "unavailable"  # the token could not be checked now: the consumer closes with 1013, not 4401
BEARER_PREFIX = "bearer."


@dataclass(frozen=True)
class SocketAuth:
    """How a socket was authenticated; `expires_at` (epoch seconds) bounds its life for token sockets."""

    method: str  # "token" | "session" | "none"
    jti: str | None = None  # the access token's jti, or the session's revocation id (tokens.session_socket_id)
    expires_at: float | None = None
    error: str | None = None  # why a presented token was refused: a code, sent as the close reason
    issued_at: float | None = None  # the access token's iat, for the per-user cutoff of deactivation
    session_key: str | None = None  # session sockets: re-checked periodically in case a close event was lost
    generation: int | None = None  # token sockets: the token's credential generation (a password change moves it)
    family: str | None = None  # token sockets: the token's family (a reused refresh token revokes it)


def _token_from_scope(scope: dict[str, Any]) -> tuple[str | None, bool]:
    """(token, chattalk subprotocol offered)."""
    offered = [p.strip() for p in scope.get("subprotocols") or []]
    token = None
    for protocol in offered:
        if protocol.startswith(BEARER_PREFIX):
            token = protocol[len(BEARER_PREFIX) :]
    if token is None:
        query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
        values = query.get("access_token")
        if values:
            token = values[0]
    return token, SUBPROTOCOL in offered


def _user_for_token_sync(raw: str) -> tuple[Any, SocketAuth]:
    from chattalk_project.domain import ServiceUnavailable

    from .services import NotAuthenticated, authenticate_access_token
    from .tokens import FAMILY_CLAIM, GENERATION_CLAIM

    try:
        user, token = authenticate_access_token(raw)
    except NotAuthenticated as exc:
        return AnonymousUser(), SocketAuth("none", error=exc.code)
    except ServiceUnavailable:
        return AnonymousUser(), SocketAuth("none", error=UNAVAILABLE)
    return user, SocketAuth(
        "token",
        jti=str(token.get("jti")),
        expires_at=float(token["exp"]),
        issued_at=token.get("iat"),
        generation=int(token.get(GENERATION_CLAIM) or 0),
        family=token.get(FAMILY_CLAIM),
    )


# A worker thread of the pool, not the one thread-sensitive thread: a storm of connects checks tokens side by side.
_user_for_token = DatabaseSyncToAsync(_user_for_token_sync, thread_sensitive=False)


def allowed_origin_hosts() -> set[str]:
    hosts = {h.lower() for h in settings.ALLOWED_HOSTS}
    for origin in settings.CORS_ALLOWED_ORIGINS + settings.CSRF_TRUSTED_ORIGINS:
        netloc = urlsplit(origin).netloc.lower()
        if netloc:
            hosts.add(netloc)
            hosts.add(netloc.split(":")[0])
    return hosts


def origin_is_allowed(scope: dict[str, Any]) -> bool:
    """No Origin (bots, load tools) is fine: browsers always send one, and that is what CSWSH abuses."""
    origin = None
    for name, value in scope.get("headers") or []:
        if name == b"origin":
            origin = value.decode("latin-1")
    if origin is None:
        return True
    parts = urlsplit(origin)
    if not parts.netloc:
        return False
    hosts = allowed_origin_hosts()
    if "*" in hosts:
        return True
    netloc = parts.netloc.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6: ALLOWED_HOSTS spells it in brackets
        host = f"[{host}]"
    # A leading dot matches the domain and its subdomains, as in ALLOWED_HOSTS.
    return (
        netloc in hosts
        or host in hosts
        or any(h.startswith(".") and (host == h[1:] or host.endswith(h)) for h in hosts)
    )


class _SessionSocketAuth:
    """Inside channels' session stack: the socket is the session's user, or nobody."""

    def __init__(self, inner: Any):
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        user = scope.get("user")
        if user is not None and getattr(user, "is_authenticated", False):
            # Session sockets live as long as the session; logout closes them by their session id,
            # deactivation closes every socket of the user.
            session_key = getattr(scope.get("session"), "session_key", None)
            scope["socket_auth"] = SocketAuth(
                "session",
                jti=session_socket_id(session_key),
                expires_at=time.time() + settings.SESSION_COOKIE_AGE,
                session_key=session_key,
            )
        else:
            scope["user"] = AnonymousUser()
            scope["socket_auth"] = SocketAuth("none", error="not_authenticated")
        return await self.inner(scope, receive, send)


class ChatTalkAuthMiddleware:
    """Origin check, then a token if one was presented (it wins), else the session cookie.

    A token socket goes straight to the app, around channels' session and cookie middleware: their send
    wrapper inspects the session on every frame of every socket (about 16 % of the server's CPU per
    delivery in the fan-out benchmark) and their per-socket state costs memory, for a socket that never
    uses a session.
    """

    def __init__(self, inner: Any):
        self.inner = inner
        self.session_stack = AuthMiddlewareStack(_SessionSocketAuth(inner))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_is_allowed(scope):
            # Refused before accept (the client sees an HTTP 403): a foreign page must learn nothing more.
            logger.warning("websocket refused: origin not allowed")
            message = await receive()
            if message.get("type") == "websocket.connect":
                await send({"type": "websocket.close", "code": 4403})
            return None
        raw, wants_subprotocol = _token_from_scope(scope)
        scope = dict(scope)
        scope["chattalk_subprotocol"] = SUBPROTOCOL if wants_subprotocol else None
        if not raw:
            return await self.session_stack(scope, receive, send)
        user, auth = await _user_for_token(raw)
        scope["user"] = user
        scope["socket_auth"] = auth
        return await self.inner(scope, receive, send)


def ChatTalkAuthStack(inner: Any) -> Any:  # noqa: N802 - named like channels' AuthMiddlewareStack
    return ChatTalkAuthMiddleware(inner)
