"""The one authentication path for HTTP edges: a JWT that is not revoked, else the session."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication

from .tokens import access_token_is_revoked


class RevocableJWTAuthentication(JWTAuthentication):
    """simplejwt's Bearer authentication plus the logout denylist and the per-user cutoff."""

    def get_user(self, validated_token: Any) -> Any:
        user = super().get_user(validated_token)
        if access_token_is_revoked(user.pk, validated_token.get("jti"), validated_token.get("iat")):
            raise exceptions.AuthenticationFailed("Token has been revoked.", code="token_revoked")
        return user
