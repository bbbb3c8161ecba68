from __future__ import annotations

import itertools
from typing import Any

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User

_counter = itertools.count(1)


def bearer_client(user: User | None) -> APIClient:
    """A REST/GraphQL client authenticated the way real clients are: a Bearer access token."""
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


@pytest.fixture
def make_user(db: None) -> Any:
    def make(name: str | None = None, **extra: Any) -> User:
        username = name or f"rooms-user{next(_counter)}"
        return User.objects.create_user(username=username, password="pw-Secret-123", nickname=username.title(), **extra)

    return make


@pytest.fixture
def client_for() -> Any:
    return bearer_client
