from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from accounts.models import User

_counter = itertools.count(1)


@pytest.fixture
def make_user() -> Any:
    def make(name: str | None = None) -> User:
        username = name or f"ev{next(_counter)}-{uuid.uuid4().hex[:6]}"
        return User.objects.create_user(username=username, password="pw-Secret-123", nickname=username.title())

    return make


@pytest.fixture
def topic_prefix(settings: Any) -> Iterator[str]:
    """Fresh topics for each test on a shared broker: KAFKA_TOPIC_PREFIX + a unique part."""
    prefix = f"{settings.KAFKA_TOPIC_PREFIX}t{uuid.uuid4().hex[:10]}."
    settings.KAFKA_TOPIC_PREFIX = prefix
    yield prefix
