"""The GraphQL endpoint: the same authentication as REST, with limits on query size and depth.

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
from rest_framework import exceptions
from rest_framework.request import Request

from accounts.authentication import RevocableJWTAuthentication
from core.errors import error_body

from .graphql_limits import query_too_large, rules_with_limits


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    check = CsrfViewMiddleware(lambda req: HttpResponse())
    check.process_request(request)
    return check.process_view(request, lambda req: HttpResponse(), (), {})


@method_decorator(csrf_exempt, name="dispatch")
class ChatTalkGraphQLView(GraphQLView):
    validation_rules = rules_with_limits()

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
        return super().dispatch(request, *args, **kwargs)

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        try:
            return super().parse_body(request)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: JSON nested too deeply to parse
            return {}
