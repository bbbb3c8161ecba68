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
        ("http://127.0.0.1:8000", True),
        ("http://localhost:3000", True),
        ("http://[::1]:8000", True),
        ("https://spa.example.com", True),
        ("https://app.corp.example", True),  # a subdomain of a leading-dot ALLOWED_HOSTS entry
        ("https://corp.example", True),  # and the domain itself
        ("https://evil.example.net", False),
        ("https://spa.example.com.evil.net", False),
        ("null", False),
        ("", False),
    ],
)
def test_origin_must_be_an_allowed_host_or_a_configured_origin(settings, origin, allowed):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", ".corp.example"]
    settings.CORS_ALLOWED_ORIGINS = ["https://spa.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = []
    assert origin_is_allowed(scope_with(origin=origin)) is allowed
