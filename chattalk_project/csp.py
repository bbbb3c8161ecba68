"""Content-Security-Policy on every response (Django 5.2 has none built in; Django 6 will).

The pages load only their own static files: no inline script, no inline style, no plugin, no framing, forms
post only to this site, and the chat page's sockets go to this host (`connect-src` names its ws/wss origin,
since browsers differ on whether 'self' covers WebSocket URLs). The pages' start data travels in
`json_script` tags (`type="application/json"`), which are data, never run, so the policy allows them.

The tool pages (Swagger UI at /api/schema/ui/; GraphiQL at /graphql and DRF's browsable API, both only when
DEBUG is on) load code from their libraries' CDN or use inline setup scripts and styles; they get the
looser `tools_policy`, explicitly, until they are served from our own static files. Everything else gets
the strict one.

`CONTENT_SECURITY_POLICY`: `on` (default), `report-only` (the same policy, reported by browsers but not
enforced, to try it on a deployment) or `off`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

HEADER = "Content-Security-Policy"
REPORT_ONLY_HEADER = "Content-Security-Policy-Report-Only"


def _socket_origins(request: HttpRequest) -> list[str]:
    try:
        host = request.get_host()
    except DisallowedHost:  # the 400 for a foreign Host header names no socket origin at all
        return []
    return [f"wss://{host}"] if request.is_secure() else [f"ws://{host}", f"wss://{host}"]


def _render(directives: dict[str, list[str]]) -> str:
    return "; ".join(" ".join([name, *values]) for name, values in directives.items())


def _strict_directives(request: HttpRequest) -> dict[str, list[str]]:
    return {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'", *_socket_origins(request)],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }


def strict_policy(request: HttpRequest) -> str:
    return _render(_strict_directives(request))


def _tool_origins() -> list[str]:
    """Where the tool pages load their code from: the origin of drf-spectacular's Swagger UI distribution as
    configured, and as it ships (graphene-django's GraphiQL template loads from that same CDN)."""
    from drf_spectacular.settings import SPECTACULAR_DEFAULTS, spectacular_settings

    origins = set()
    for url in (spectacular_settings.SWAGGER_UI_DIST, SPECTACULAR_DEFAULTS["SWAGGER_UI_DIST"]):
        parts = urlsplit(url if isinstance(url, str) else "")
        if parts.scheme == "https" and parts.netloc:
            origins.add(f"https://{parts.netloc}")
    return sorted(origins)


def tools_policy(request: HttpRequest) -> str:
    """The strict policy, plus the tools' CDN and their inline setup scripts and styles."""
    directives = _strict_directives(request)
    cdn = _tool_origins()
    directives["script-src"] = ["'self'", "'unsafe-inline'", *cdn]
    directives["style-src"] = ["'self'", "'unsafe-inline'", *cdn]
    directives["img-src"] = ["'self'", "data:", *cdn]
    directives["font-src"] = ["'self'", "data:", *cdn]
    return _render(directives)


def _set(response: HttpResponse, policy: str) -> None:
    mode = settings.CONTENT_SECURITY_POLICY
    if mode == "off":
        return
    response[REPORT_ONLY_HEADER if mode == "report-only" else HEADER] = policy


def with_tools_policy(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A view decorator: its responses carry the tools policy instead of the strict one."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return apply_tools_policy(request, view(request, *args, **kwargs))

    return wrapped


def apply_tools_policy(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Marks one response of a tool page (the strict middleware then leaves it alone)."""
    _set(response, tools_policy(request))
    return response


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Sets the strict policy on every response that has none of its own yet (sync and async, as Django's
    own middleware)."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if HEADER in response or REPORT_ONLY_HEADER in response:
            return response
        if getattr(getattr(response, "accepted_renderer", None), "format", None) == "api":
            # DRF's browsable API (DEBUG only) is a tool page too: it has an inline style block.
            _set(response, tools_policy(request))
        else:
            _set(response, strict_policy(request))
        return response
