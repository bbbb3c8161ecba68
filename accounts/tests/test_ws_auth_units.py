"""Pure units of the WebSocket middleware: where the token is read from, and which Origins pass."""

from __future__ import annotations

import pytest

from accounts.ws_auth import _token_from_scope, origin_is_allowed


def scope_with(origin: str | None = None, subprotocols: list[str] | None = None, query: bytes = b"") -> dict:
    headers = [(b"origin", origin.encode())] if origin is not None else []
    return {"type": "websocket", "headers": headers, "subprotocols": subprotocols or [], "query_string": query}


def test_the_subprotocol_token_wins_over_the_query_and_chattalk_is_noticed():
    assert _token_from_scope(scope_with(subprotocols=["chattalk", "bearer.abc"], query=b"access_token=q")) == (
        "abc",
        True,
    )
    assert _token_from_scope(scope_with(query=b"access_token=q&after_seq=3")) == ("q", False)
    assert _token_from_scope(scope_with()) == (None, False)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # bots and load tools send none
        ("http://chat.example.org:8000", True),  # the socket's own origin
        ("http://CHAT.example.org:8000", True),
        ("http://chat.example.org:8001", False),  # another port of the same host
        ("https://chat.example.org:8000", False),  # another scheme of the same host
        ("http://chat.example.org", False),  # port 80, not 8000
        ("https://spa.example.com", True),  # configured in CORS_ALLOWED_ORIGINS
        ("https://spa.example.com:443", True),
        ("http://spa.example.com", False),  # the configured origin is https only
        ("https://spa.example.com:8443", False),
        ("https://app.corp.example", True),  # CSRF_TRUSTED_ORIGINS wildcard
        ("https://corp.example.evil.net", False),
        ("http://app.corp.example", False),
        ("https://evil.example.net", False),
        ("https://spa.example.com.evil.net", False),
        ("null", False),
        ("", False),
        ("http://chat.example.org:99999", False),
    ],
)
def test_origin_must_be_the_sockets_own_origin_or_a_configured_one_scheme_host_and_port(settings, origin, allowed):
    settings.ALLOWED_HOSTS = ["chat.example.org"]
    settings.CORS_ALLOWED_ORIGINS = ["https://spa.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.corp.example"]
    scope = scope_with(origin=origin)
    scope["headers"].append((b"host", b"chat.example.org:8000"))
    scope["scheme"] = "ws"
    assert origin_is_allowed(scope) is allowed


def test_a_host_header_outside_allowed_hosts_is_no_origin_of_ours(settings):
    settings.ALLOWED_HOSTS = ["chat.example.org"]
    settings.CORS_ALLOWED_ORIGINS = []
    settings.CSRF_TRUSTED_ORIGINS = []
    scope = scope_with(origin="http://evil.example.net:8000")
    scope["headers"].append((b"host", b"evil.example.net:8000"))
    assert origin_is_allowed(scope) is False


def test_a_tls_socket_behind_the_balancer_has_an_https_origin(settings):
    settings.ALLOWED_HOSTS = ["chat.example.org"]
    settings.CORS_ALLOWED_ORIGINS = []
    settings.CSRF_TRUSTED_ORIGINS = []
    scope = scope_with(origin="https://chat.example.org")
    scope["headers"].append((b"host", b"chat.example.org"))
    scope["scheme"] = "wss"
    assert origin_is_allowed(scope) is True
    scope["scheme"] = "ws"
    assert origin_is_allowed(scope) is False
