"""REST views of /api/auth/: parse the body, call accounts.services, shape the answer, set cookies.

Login, signup and the password change hash passwords: the hashers run each hash on the password pool
(password_pool.py) while the rest of the view runs on the request's thread like any other view.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.tokens import Token

from core.domain import InvalidInput

from . import services
from .serializers import (
    LoginRequestSerializer,
    LoginResponseSerializer,
    MeSerializer,
    PasswordChangeRequestSerializer,
    RefreshRequestSerializer,
    SignupRequestSerializer,
    TokenPairSerializer,
    UserSerializer,
)
from .throttling import (
    LoginIPThrottle,
    LoginUsernameThrottle,
    PasswordChangeUserThrottle,
    SignupIPThrottle,
    SignupUsernameThrottle,
)

REFRESH_COOKIE_PATH = "/api/auth/"


def _body(request: Request) -> dict[str, Any]:
    data = request.data
    if not isinstance(data, dict):
        raise InvalidInput(fields={"non_field_errors": ["The body must be a JSON object."]})
    return data


def _set_refresh_cookie(response: Response, refresh: str) -> None:
    """HttpOnly and SameSite=Strict, sent only to /api/auth/: an SPA may refresh and log out without ever
    holding the refresh token in JavaScript."""
    response.set_cookie(
        settings.AUTH_REFRESH_COOKIE,
        refresh,
        max_age=int(settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"].total_seconds()),
        path=REFRESH_COOKIE_PATH,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Strict",
    )


def _refresh_from(request: Request, body: dict[str, Any]) -> Any:
    value = body.get("refresh")
    if value in (None, ""):
        value = request.COOKIES.get(settings.AUTH_REFRESH_COOKIE)
    return value


class SignupView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [SignupIPThrottle, SignupUsernameThrottle]

    @extend_schema(request=SignupRequestSerializer, responses={201: UserSerializer})
    def post(self, request: Request) -> Response:
        body = _body(request)
        services.refuse_privileged_fields(body)
        user = services.signup(
            username=body.get("username"),
            password=body.get("password"),
            email=body.get("email"),
            nickname=body.get("nickname"),
        )
        return Response(UserSerializer(user).data, status=201)


class LoginView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginIPThrottle, LoginUsernameThrottle]

    @extend_schema(request=LoginRequestSerializer, responses={200: LoginResponseSerializer})
    def post(self, request: Request) -> Response:
        body = _body(request)
        result = services.login(request=request._request, username=body.get("username"), password=body.get("password"))
        response = Response(
            {
                "access": result.tokens.access,
                "refresh": result.tokens.refresh,
                "user": MeSerializer(result.user).data,
            }
        )
        _set_refresh_cookie(response, result.tokens.refresh)
        return response


class RefreshView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(request=RefreshRequestSerializer, responses={200: TokenPairSerializer})
    def post(self, request: Request) -> Response:
        pair = services.refresh(_refresh_from(request, _body(request)))
        response = Response({"access": pair.access, "refresh": pair.refresh})
        _set_refresh_cookie(response, pair.refresh)
        return response


class LogoutView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(request=RefreshRequestSerializer, responses={204: None})
    def post(self, request: Request) -> Response:
        body = _body(request)
        refresh = _refresh_from(request, body)
        access = request.auth.payload if isinstance(request.auth, Token) else None
        if access is not None and refresh in (None, ""):
            raise InvalidInput(fields={"refresh": ["This field is required."]})
        services.logout(request=request._request, user=request.user, access=access, refresh_token=refresh)
        response = Response(status=204)
        response.delete_cookie(settings.AUTH_REFRESH_COOKIE, path=REFRESH_COOKIE_PATH, samesite="Strict")
        return response


class PasswordChangeView(APIView):
    """The caller's own password (two hashes, each on the password pool); throttled per user, since a
    stolen access token must not buy unlimited guesses of the current password."""

    permission_classes = [IsAuthenticated]
    throttle_classes = [PasswordChangeUserThrottle]

    @extend_schema(request=PasswordChangeRequestSerializer, responses={200: TokenPairSerializer})
    def post(self, request: Request) -> Response:
        body = _body(request)
        pair = services.change_password(
            request=request._request,
            user=request.user,
            old_password=body.get("old_password"),
            new_password=body.get("new_password"),
        )
        response = Response({"access": pair.access, "refresh": pair.refresh})
        _set_refresh_cookie(response, pair.refresh)
        return response


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: MeSerializer})
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user).data)
