"""Create the demo admin and a demo room on a fresh install and print how to log in. Safe to run again."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand

from accounts.models import User
from rooms.models import Room
from rooms.services import create_room

DEMO_ROOM_TITLE = "Welcome to ChatTalk"


class Command(BaseCommand):
    help = "Create the demo admin (admin / DEMO_ADMIN_PASSWORD or 'chattalk-admin') and a demo room."

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("DEMO_ADMIN_USERNAME", "admin")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "chattalk-admin")
        admin = User.objects.filter(username=username).first()
        if admin is None:
            admin = User.objects.create_superuser(username=username, password=password, nickname="Admin")
            self.stdout.write(self.style.SUCCESS(f"created the demo admin: {username} / {password}"))
        else:
            self.stdout.write(f"demo admin exists: {username} (password unchanged)")
        if not Room.objects.filter(title=DEMO_ROOM_TITLE).exists():
            room = create_room(owner=admin, title=DEMO_ROOM_TITLE, max_personnel=100)
            self.stdout.write(self.style.SUCCESS(f"created the demo room #{room.pk}: {room.title}"))
        self.stdout.write(
            f"open http://127.0.0.1:8000/ to chat, http://127.0.0.1:8000/admin/ to administer (log in as {username})"
        )
