from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """ChatTalk's user. Staff and superuser flags are only ever set by operators, never by signup."""

    nickname = models.CharField(max_length=50, blank=True)

    @property
    def display_name(self) -> str:
        return self.nickname or self.username

    def as_public_dict(self) -> dict[str, object]:
        """The embedded User of the wire contract: {id, username, nickname}."""
        return {"id": self.pk, "username": self.username, "nickname": self.nickname}
