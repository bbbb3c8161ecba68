"""Credentials for tests and tools."""

from __future__ import annotations

from typing import Any

from rest_framework_simplejwt.tokens import AccessToken


def access_token_for(user: Any) -> str:
    return str(AccessToken.for_user(user))
