from __future__ import annotations

import itertools
from typing import Any

import pytest

from accounts.models import User
from rooms.services import create_room, join_room

_counter = itertools.count(1)


@pytest.fixture
def make_user(db: None) -> Any:
    def make(name: str | None = None) -> User:
        username = name or f"user{next(_counter)}"
        return User.objects.create_user(username=username, password="pw-Secret-123", nickname=username.title())

    return make


@pytest.fixture
def room_with_members(make_user: Any) -> Any:
    """room_with_members(n) -> (room, [owner, member2, ...]); every user is a member."""

    def make(members: int = 2, max_personnel: int = 100) -> tuple[Any, list[User]]:
        owner = make_user()
        room = create_room(owner=owner, title="general", max_personnel=max_personnel)
        users = [owner]
        for _ in range(members - 1):
            user = make_user()
            join_room(room_id=room.pk, user=user)
            users.append(user)
        room.refresh_from_db()
        return room, users

    return make
