"""Users and rooms for presence tests, made through the real services."""

from __future__ import annotations

import itertools
from typing import Any

from accounts.models import User
from rooms.models import Room
from rooms.services import create_room, join_room

_numbers = itertools.count(1)


def make_user(name: str = "user") -> User:
    return User.objects.create_user(username=f"{name}{next(_numbers)}", password="pw-not-used-1", nickname=name)


def make_room(owner: User, *members: Any) -> Room:
    room = create_room(owner=owner, title="presence room", max_personnel=10)
    for member in members:
        join_room(room_id=room.pk, user=member)
    return room
