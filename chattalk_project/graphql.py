"""The GraphQL endpoint: the same authentication as REST, with limits on query size, depth, cost, aliases and
root fields (graphql_limits), and on requests per user (per client address when anonymous).

Authentication: a Bearer access token (csrf-exempt, as for REST), or the session cookie with its CSRF token.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from graphene_django.views import GraphQLView
from graphql import ExecutionResult, specified_rules
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from accounts.authentication import RevocableJWTAuthentication
from core.errors import error_body
from core.graphql_limits import limit_rules, query_too_large, refused_by_limits
from core.rate_limits import Rate, RateLimit, RateLimited

from .api_docs import GRAPHIQL_TEMPLATE
from .csp import apply_policy, graphiql_policy
from .schema import LIST_BOUNDS


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    check = CsrfViewMiddleware(lambda req: HttpResponse())
    check.process_request(request)
    return check.process_view(request, lambda req: HttpResponse(), (), {})


GRAPHQL_REQUESTS = RateLimit("graphql", lambda: Rate(settings.GRAPHQL_REQUESTS_PER_MINUTE, 60))


def _caller(request: HttpRequest) -> str:
    """Whom a request counts against: the user, or the client address when anonymous (the address as the
    login throttles read it, so the same proxy settings apply)."""
    if request.user.is_authenticated:
        return f"user:{request.user.pk}"
    return f"ip:{BaseThrottle().get_ident(Request(request))}"


def _rate_limited(exc: RateLimited) -> JsonResponse:
    """A 429 that both kinds of client read: the contract's error body, and GraphQL's `errors` list."""
    body = {
        **error_body(exc.code, exc.detail),
        "errors": [{"message": exc.detail, "extensions": {"code": exc.code, "retryAfter": exc.retry_after}}],
    }
    response = JsonResponse(body, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


@method_decorator(csrf_exempt, name="dispatch")
class ChatTalkGraphQLView(GraphQLView):
    # GraphiQL (DEBUG only) from our vendored copy, not graphene-django's CDN template: offline, strict policy.
    graphiql_template = GRAPHIQL_TEMPLATE
    validation_rules = specified_rules  # the limits run first, on their own: execute_graphql_request
    limits = limit_rules(LIST_BOUNDS)

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("graphiql", settings.DEBUG)
        super().__init__(**kwargs)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        too_large = query_too_large(request)
        if too_large is not None:
            return too_large
        # A valid Bearer token authenticates (no CSRF: a browser never adds that header by itself); a bad one
        # is a 401 with the same codes as REST; anything else falls back to the session, with its CSRF check.
        bearer = None
        if "HTTP_AUTHORIZATION" in request.META:
            try:
                bearer = RevocableJWTAuthentication().authenticate(Request(request))
            except exceptions.AuthenticationFailed as exc:
                codes = exc.get_codes()
                code = codes if isinstance(codes, str) else "token_invalid"
                return JsonResponse(error_body(code, str(exc.detail)), status=401)
        if bearer is not None:
            request.user = bearer[0]
        elif request.method == "POST" and request.user.is_authenticated:
            failure = _csrf_failure(request)
            if failure is not None:
                return JsonResponse(error_body("csrf_failed", "CSRF token missing or wrong."), status=403)
        try:
            GRAPHQL_REQUESTS.hit(_caller(request))
        except RateLimited as exc:
            return _rate_limited(exc)
        return super().dispatch(request, *args, **kwargs)

    def execute_graphql_request(
        self, request: HttpRequest, data: Any, query: str | None, *args: Any, **kwargs: Any
    ) -> ExecutionResult | None:
        if isinstance(query, str) and query:  # anything else is the view's own 400
            refusals = refused_by_limits(self.schema.graphql_schema, query, self.limits)
            if refusals:
                return ExecutionResult(data=None, errors=refusals)
        return super().execute_graphql_request(request, data, query, *args, **kwargs)

    def render_graphiql(self, request: HttpRequest, **data: Any) -> HttpResponse:
        """GraphiQL (DEBUG only): its stylesheet's data: fonts are the one exception to the strict policy."""
        return apply_policy(request, super().render_graphiql(request, **data), graphiql_policy)

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        try:
            return super().parse_body(request)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: JSON nested too deeply to parse
            return {}
