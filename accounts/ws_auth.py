"""The one WebSocket authentication middleware.

A token comes from the `access_token` query parameter or the subprotocol pair ["chattalk", "bearer.<jwt>"];
without one, the session cookie is used. The result is put in the scope and never refused here: the consumer
accepts and closes with 4401, so that the client sees the code. Only a foreign Origin is refused before accept.
All lookups (user row, denylist) run in one worker-thread call, never in the event loop.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import split_domain_port, validate_host

from realtime.auth import ANONYMOUS, UNAVAILABLE, SocketAuth

from .tokens import session_socket_id

logger = logging.getLogger(__name__)

SUBPROTOCOL = "chattalk"
BEARER_PREFIX = "bearer."


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
    from core.domain import ServiceUnavailable

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


DEFAULT_PORTS = {"http": 80, "https": 443}
SOCKET_TO_PAGE_SCHEME = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def _origin_tuple(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin, the port made explicit; None if it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _configured_origin_allows(origin: tuple[str, str, int], configured: str) -> bool:
    """An entry of CORS_ALLOWED_ORIGINS / CSRF_TRUSTED_ORIGINS; `https://*.example.com` covers subdomains
    on that scheme and port, as Django's CSRF_TRUSTED_ORIGINS does."""
    wildcard = "://*." in configured
    allowed = _origin_tuple(configured.replace("://*.", "://", 1) if wildcard else configured)
    if allowed is None:
        return False
    scheme, host, port = allowed
    if wildcard:
        return origin[0] == scheme and origin[2] == port and origin[1].endswith("." + host)
    return origin == allowed


def _own_origin(scope: dict[str, Any]) -> tuple[str, str, int] | None:
    """The origin a page served by this server over the socket's own connection would have: scheme from
    the socket (ws -> http, wss -> https; behind a proxy, what the proxy told uvicorn), host and port from
    the Host header, which must name an ALLOWED_HOSTS entry."""
    host_header = next((value.decode("latin-1") for name, value in scope.get("headers") or [] if name == b"host"), "")
    scheme = SOCKET_TO_PAGE_SCHEME.get(str(scope.get("scheme") or "ws"), "http")
    own = _origin_tuple(f"{scheme}://{host_header}") if host_header else None
    if own is None or not validate_host(split_domain_port(host_header)[0], settings.ALLOWED_HOSTS):
        return None
    return own


def origin_is_allowed(scope: dict[str, Any]) -> bool:
    """The socket's own origin (scheme, host and port all equal), or one configured in CORS_ALLOWED_ORIGINS
    or CSRF_TRUSTED_ORIGINS. No Origin at all (bots, load tools) is fine: browsers always send one, and a
    foreign page's socket (cross-site WebSocket hijacking with the session cookie) is what this stops; a
    page on another port or scheme of the same host is another origin."""
    raw = None
    for name, value in scope.get("headers") or []:
        if name == b"origin":
            raw = value.decode("latin-1")
    if raw is None:
        return True
    origin = _origin_tuple(raw)
    if origin is None:
        return False
    if origin == _own_origin(scope):
        return True
    configured = [*settings.CORS_ALLOWED_ORIGINS, *settings.CSRF_TRUSTED_ORIGINS]
    return any(_configured_origin_allows(origin, entry) for entry in configured)


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
            scope["socket_auth"] = ANONYMOUS
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
