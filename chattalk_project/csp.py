"""Content-Security-Policy on every response (Django 5.2 has none built in; Django 6 will).

The pages load only their own static files: no inline script, no inline style, no plugin, no framing, forms
post only to this site, and the chat page's sockets go to this host (`connect-src` names its ws/wss origin,
since browsers differ on whether 'self' covers WebSocket URLs). The pages' start data travels in
`json_script` tags (`type="application/json"`), which are data, never run, so the policy allows them.

The API tools are served from our own static files (chattalk_project/api_docs.py, static/vendor/) with
their setup code in files, so Swagger UI (/api/schema/ui/) and the /api/docs/ index get the strict policy
too. Three pages get a named exception, scripts still 'self' only: Redoc (/api/schema/redoc/: inline styles
and a blob: worker, `redoc_policy`), GraphiQL (data: fonts, `graphiql_policy`) and DRF's browsable API
(DEBUG only: inline styles, `inline_styles_policy`).

`CONTENT_SECURITY_POLICY`: `on` (default), `report-only` (the same policy, reported by browsers but not
enforced, to try it on a deployment) or `off`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

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


def _strict_but(request: HttpRequest, **directives: list[str]) -> str:
    """The strict policy with some directives replaced: each exception is named where it is used."""
    return _render({**_strict_directives(request), **{name.replace("_", "-"): v for name, v in directives.items()}})


def inline_styles_policy(request: HttpRequest) -> str:
    """DRF's browsable API (DEBUG only): its template has a <style> block and style attributes."""
    return _strict_but(request, style_src=["'self'", "'unsafe-inline'"])


def redoc_policy(request: HttpRequest) -> str:
    """Redoc's page only (/api/schema/redoc/): its bundle (styled-components) writes <style> elements at run
    time, with no way to give them a nonce from outside the bundle, and it runs its search index in a Worker
    made from a blob: URL. Scripts stay 'self' only; docs/ARCHITECTURE.md says why this is acceptable."""
    return _strict_but(request, style_src=["'self'", "'unsafe-inline'"], worker_src=["'self'", "blob:"])


def graphiql_policy(request: HttpRequest) -> str:
    """GraphiQL's page only (/graphql in a browser, DEBUG only): its stylesheet embeds its fonts as data: URLs.
    A font runs no code."""
    return _strict_but(request, font_src=["'self'", "data:"])


def _set(response: HttpResponse, policy: str) -> None:
    mode = settings.CONTENT_SECURITY_POLICY
    if mode == "off":
        return
    response[REPORT_ONLY_HEADER if mode == "report-only" else HEADER] = policy


def apply_policy(request: HttpRequest, response: HttpResponse, policy: Callable[[HttpRequest], str]) -> HttpResponse:
    """Gives one response a named exception to the strict policy (the middleware then leaves it alone)."""
    _set(response, policy(request))
    return response


def with_policy(
    policy: Callable[[HttpRequest], str],
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A view decorator: the view's responses carry `policy` instead of the strict one."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return apply_policy(request, view(request, *args, **kwargs), policy)

        return wrapped

    return decorate


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Sets the strict policy on every response that has none of its own yet (sync and async, as Django's
    own middleware)."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if HEADER in response or REPORT_ONLY_HEADER in response:
            return response
        if getattr(getattr(response, "accepted_renderer", None), "format", None) == "api":
            # DRF's browsable API (DEBUG only): it has an inline style block.
            _set(response, inline_styles_policy(request))
        else:
            _set(response, strict_policy(request))
        return response
