from __future__ import annotations

import itertools
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import User

PASSWORD = "Correct-Horse-42"
_counter = itertools.count(1)


@pytest.fixture
def make_user(db: None) -> Any:
    def make(name: str | None = None, **extra: Any) -> User:
        username = name or f"acct{next(_counter)}"
        extra.setdefault("nickname", username.title())
        return User.objects.create_user(username=username, password=PASSWORD, **extra)

    return make


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def login(client: APIClient, user: User, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/api/auth/login", {"username": user.username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def bearer(access: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {access}"}


def assert_contract_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """A 4xx in the contract's shape: {"code", "detail", "fields"?}."""
    assert response.status_code == status, (response.status_code, response.content)
    body = response.json()
    assert isinstance(body.get("code"), str) and isinstance(body.get("detail"), str), body
    assert set(body) <= {"code", "detail", "fields"}, body
    if code is not None:
        assert body["code"] == code, body
    return body
