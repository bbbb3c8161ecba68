"""The one authentication path for HTTP edges: a Bearer access token judged by accounts.services, else
the session (DRF's SessionAuthentication, with its CSRF check)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication

from .services import NotAuthenticated, authenticate_access_token


class RevocableJWTAuthentication(JWTAuthentication):
    """simplejwt's Bearer header parsing; the token itself is checked by `authenticate_access_token`, the
    same check the WebSocket middleware makes (signature, expiry, denylist, per-user cutoff, active user)."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = self.get_header(request)
        if header is None:
            return None
        raw = self.get_raw_token(header)
        if raw is None:
            return None
        try:
            user, token = authenticate_access_token(raw.decode("latin-1"))
        except NotAuthenticated as exc:
            # Codes of the contract's error body: token_invalid, token_expired, token_revoked.
            raise exceptions.AuthenticationFailed(exc.detail, code=exc.code) from None
        return user, token


class RevocableJWTScheme(OpenApiAuthenticationExtension):
    """Tells the OpenAPI schema (drf-spectacular) that this is a Bearer JWT."""

    target_class = "accounts.authentication.RevocableJWTAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
