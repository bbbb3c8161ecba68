"""Starting the server says only what a newcomer needs: one line about the development key (not Python
warnings from every manage.py command), no uvicorn lifespan notice, and /favicon.ico answers."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest
from django.conf import settings

from chattalk_project.checks import DEVELOPMENT_KEY_LINE
from core.testing import ServerProcess

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_server_says_the_development_key_once_in_one_line_and_nothing_about_lifespan() -> None:
    server = ServerProcess(env={"SECRET_KEY": "", "LOG_LEVEL": "info"}, name="quiet-start")
    start = server.log_path.stat().st_size if server.log_path.exists() else 0
    server.start()
    try:
        with urllib.request.urlopen(f"{server.http_url}/favicon.ico", timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "image/x-icon"
            assert response.read(4) == b"\x00\x00\x01\x00"  # an ICO file
    finally:
        server.stop()
    with open(server.log_path, "rb") as log:
        log.seek(start)
        output = log.read().decode()
    assert [line for line in output.splitlines() if "SECRET_KEY" in line] == [
        line for line in output.splitlines() if line.endswith(DEVELOPMENT_KEY_LINE)
    ]
    assert sum(line.endswith(DEVELOPMENT_KEY_LINE) for line in output.splitlines()) == 1, output
    assert "lifespan" not in output.lower(), output
    assert "Warning" not in output, output
    assert "Uvicorn running on" in output  # LOG_LEVEL=info: the lines the test looks for would be shown


def test_manage_py_commands_do_not_warn_about_the_development_key() -> None:
    env = {"SECRET_KEY": "", "DJANGO_SETTINGS_MODULE": "chattalk_project.settings", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "SECRET_KEY" not in done.stdout + done.stderr
