"""`manage.py bootstrap_demo`: the demo admin's public password exists only with DEBUG on."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from accounts.models import User
from core.testing import BASE_DIR
from core.testing import test_database_url as current_database_url
from rooms.management.commands.bootstrap_demo import DEMO_ROOM_TITLE, DEVELOPMENT_PASSWORD
from rooms.models import Room

STRONG = "Plum-Harbour-Vessel-8143"


def run_bootstrap(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_ADMIN_")}
    return subprocess.run(
        [sys.executable, "-W", "ignore", "manage.py", "bootstrap_demo"],
        cwd=BASE_DIR,
        env={**base, "DATABASE_URL": current_database_url(), "TESTING": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("password_env", [{}, {"DEMO_ADMIN_PASSWORD": ""}], ids=["unset", "empty"])
def test_outside_debug_bootstrap_without_a_demo_admin_password_refuses_and_creates_nothing(
    transactional_db, password_env
):
    result = run_bootstrap(DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50), **password_env)
    assert result.returncode != 0, result.stdout
    assert "DEMO_ADMIN_PASSWORD is not set" in result.stderr and "Nothing was created" in result.stderr
    assert DEVELOPMENT_PASSWORD not in result.stdout + result.stderr
    assert not User.objects.exists()
    assert not Room.objects.exists()


def test_outside_debug_a_weak_demo_admin_password_is_refused(db, monkeypatch):
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "admin")
    with override_settings(DEBUG=False), pytest.raises(CommandError, match="too weak"):
        call_command("bootstrap_demo", stdout=io.StringIO())
    assert not User.objects.exists() and not Room.objects.exists()


def test_outside_debug_an_explicit_password_creates_the_admin_and_room_without_printing_the_password(db, monkeypatch):
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", STRONG)
    out = io.StringIO()
    with override_settings(DEBUG=False):
        call_command("bootstrap_demo", stdout=out)
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(STRONG)
    assert Room.objects.filter(title=DEMO_ROOM_TITLE, owner=admin).exists()
    assert STRONG not in out.getvalue() and "created the demo admin: admin" in out.getvalue()


def test_the_development_password_works_with_debug_on_only(db, monkeypatch):
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)
    with override_settings(DEBUG=False), pytest.raises(CommandError):
        call_command("bootstrap_demo", stdout=io.StringIO())
    assert not User.objects.exists()

    out = io.StringIO()
    with override_settings(DEBUG=True):
        call_command("bootstrap_demo", stdout=out)
    assert User.objects.get(username="admin").check_password(DEVELOPMENT_PASSWORD)
    assert f"admin / {DEVELOPMENT_PASSWORD}" in out.getvalue()  # the quick start prints its login
