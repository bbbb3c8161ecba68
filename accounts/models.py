from __future__ import annotations

from typing import TypedDict

from django.contrib.auth.models import AbstractUser
from django.db import models


class PublicUser(TypedDict):
    """The embedded User of the wire contract, the same on every edge (REST, GraphQL, frames, Kafka)."""

    id: int
    username: str
    nickname: str


class User(AbstractUser):
    """ChatTalk's user. Staff and superuser flags are only ever set by operators, never by signup."""

    nickname = models.CharField(max_length=50, blank=True)

    @property
    def display_name(self) -> str:
        return self.nickname or self.username

    def as_public_dict(self) -> PublicUser:
        """The embedded User of the wire contract: {id, username, nickname}."""
        return {"id": self.pk, "username": self.username, "nickname": self.nickname}
