"""Create the demo admin and a demo room on a fresh install and print how to log in. Safe to run again.

The built-in password `chattalk-admin` is for a laptop (DEBUG on) only: outside DEBUG the command refuses to
run, creating nothing, unless DEMO_ADMIN_PASSWORD gives one that passes the password validators; a public
superuser password would otherwise be one `scripts/run` away from production.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from rooms.models import Room
from rooms.services import create_room

DEMO_ROOM_TITLE = "Welcome to ChatTalk"
DEVELOPMENT_PASSWORD = "chattalk-admin"


class Command(BaseCommand):
    help = (
        "Create the demo admin (admin / DEMO_ADMIN_PASSWORD, or 'chattalk-admin' with DEBUG on only) and a demo room."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("DEMO_ADMIN_USERNAME", "admin")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "")
        if not settings.DEBUG:
            if not password:
                raise CommandError(
                    "DEBUG is off and DEMO_ADMIN_PASSWORD is not set: refusing to create the demo admin with the "
                    "public development password. Set DEMO_ADMIN_PASSWORD, or create an admin with "
                    "`manage.py createsuperuser`. Nothing was created."
                )
            try:
                validate_password(password, User(username=username))
            except ValidationError as exc:
                raise CommandError(
                    f"DEMO_ADMIN_PASSWORD is too weak: {' '.join(exc.messages)} Nothing was created."
                ) from exc
        password = password or DEVELOPMENT_PASSWORD  # reached with no password only with DEBUG on
        shown = password if settings.DEBUG else "(the password in DEMO_ADMIN_PASSWORD)"
        admin = User.objects.filter(username=username).first()
        if admin is None:
            admin = User.objects.create_superuser(username=username, password=password, nickname="Admin")
            self.stdout.write(self.style.SUCCESS(f"created the demo admin: {username} / {shown}"))
        else:
            self.stdout.write(f"demo admin exists: {username} (password unchanged)")
        if not Room.objects.filter(title=DEMO_ROOM_TITLE).exists():
            room = create_room(owner=admin, title=DEMO_ROOM_TITLE, max_personnel=100)
            self.stdout.write(self.style.SUCCESS(f"created the demo room #{room.pk}: {room.title}"))
        self.stdout.write(
            f"open http://127.0.0.1:8000/ to chat, http://127.0.0.1:8000/admin/ to administer (log in as {username})"
        )
