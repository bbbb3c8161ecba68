"""No token in any log line: the production server at DEBUG level, with and without its access log, and the
logging configuration every process gets (uvicorn's own loggers and Django's included)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys

import httpx
import pytest
import websockets
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.testing import access_token_for
from core.request_id import JsonFormatter, RedactSecrets
from core.testing import BASE_DIR, ServerProcess

from .security_support import make_cast

# Signed with another key: the server refuses it, after logging the socket's URL like any other.
FORGED = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIiwidXNlcl9pZCI6MSwianRpIjoiZm9yZ2VkIn0"
    ".c2lnbmVkLXdpdGgtdGhlLXdyb25nLWtleS0wMTIzNDU2Nzg5"
)
OPAQUE = "opaque-Secret-Value-4242"  # not a JWT: found by its parameter name


def secret_fragments(token: str) -> list[str]:
    """The token and each of its parts long enough to identify it (a JWT's header is the same for all)."""
    parts = [part for part in token.split(".")[1:] if len(part) >= 8] if token.startswith("eyJ") else []
    return [token, *parts]


async def open_sockets(server: ServerProcess, room_id: int, valid: str) -> list[str]:
    """Every kind of socket that carries a token; returns what the server said to each, for the record."""
    base = f"{server.ws_url}/ws/rooms/{room_id}/"
    attempts = [
        (f"{base}?access_token={valid}&after_seq=0", None),
        (f"{base}presence/?access_token={valid}", None),
        (f"{base}?access_token={FORGED}", None),
        (f"{base}?access_token={OPAQUE}", None),
        (f"{base}?after_seq=0", ["chattalk", f"bearer.{valid}"]),
        (f"{base}?after_seq=0", ["chattalk", f"bearer.{FORGED}"]),
        (f"{server.ws_url}/ws/no/such/path/?access_token={valid}", None),
    ]
    said = []
    for url, subprotocols in attempts:
        async with websockets.connect(url, subprotocols=subprotocols, open_timeout=10) as ws:
            try:
                said.append(str(await asyncio.wait_for(ws.recv(), 5))[:60])
            except TimeoutError:
                said.append("silent")
            except websockets.ConnectionClosed as closed:
                said.append(f"closed {closed.rcvd.code if closed.rcvd else None}")
    return said


@pytest.mark.parametrize(
    "log_env",
    [
        {"ACCESS_LOG": "on", "LOG_FORMAT": "text", "LOG_LEVEL": "DEBUG"},
        # uvicorn's TRACE level logs every ASGI message: the scope (query string, Authorization and
        # Sec-WebSocket-Protocol headers, cookies) as dicts of bytes.
        {"ACCESS_LOG": "off", "LOG_FORMAT": "json", "LOG_LEVEL": "TRACE"},
    ],
    ids=["debug-access-log-text", "trace-no-access-log-json"],
)
def test_no_token_reaches_the_server_log_at_debug_or_trace_level(server_factory, log_env):
    cast = make_cast()
    valid = access_token_for(cast.member)
    refresh = str(RefreshToken.for_user(cast.member))
    server = server_factory(env=log_env)
    log_start = server.log_path.stat().st_size

    said = asyncio.run(open_sockets(server, cast.room.pk, valid))
    # The valid tokens were served, the forged ones refused: each socket went as far as its "accepted" line.
    assert said[0].startswith("{") and said[4].startswith("{"), said
    assert said[2] == said[3] == said[5] == "closed 4401", said
    with httpx.Client(base_url=server.http_url, timeout=10) as http:
        assert (
            http.get(f"/api/rooms?access_token={valid}", headers={"Authorization": f"Bearer {valid}"}).status_code
            == 200
        )
        http.get(f"/api/rooms?access_token={OPAQUE}", headers={"Authorization": f"Bearer {FORGED}"})
        http.get(f"/api/auth/refresh?refresh={refresh}")
        http.post("/api/auth/refresh", json={"refresh": refresh})
        http.get(f"/no/such/page?access_token={valid}")
    server.stop()

    log = server.log_path.read_text(errors="replace")[log_start:]
    # The lines that used to carry the tokens are there, scrubbed:
    assert "[accepted]" in log and "access_token=[redacted]" in log, log[-3000:]
    if log_env["ACCESS_LOG"] == "on":
        assert "GET /api/rooms?access_token=[redacted]" in log and "refresh=[redacted]" in log, log[-3000:]
    else:
        assert "uvicorn.access" not in log, log[-3000:]
    if log_env["LOG_FORMAT"] == "json":
        assert all(json.loads(line) for line in log.splitlines() if line.startswith("{"))
    for token in (valid, refresh, FORGED, OPAQUE):
        for fragment in secret_fragments(token):
            assert fragment not in log, f"{fragment[:20]}... is in the server log"


def test_every_log_handler_in_a_server_process_scrubs_secrets() -> None:
    """uvicorn configures its handlers before it imports the app; Django's configuration must replace them,
    and Django's own default handlers, so that no record leaves unscrubbed whatever its logger."""
    script = (
        "import logging, django, uvicorn.config;"
        "uvicorn.config.Config('chattalk_project.asgi:application', log_level='debug', access_log=True);"
        "django.setup();"
        "from core.request_id import RedactSecrets;"
        "loggers = [logging.root] + [l for l in logging.root.manager.loggerDict.values() if isinstance(l, logging.Logger)];"
        "bare = sorted({f'{l.name}: {h!r}' for l in loggers for h in l.handlers"
        "               if not isinstance(h, logging.NullHandler)"  # writes nothing anywhere
        "               and not any(isinstance(f, RedactSecrets) for f in h.filters)});"
        "print('UNSCRUBBED', bare); print('HANDLERS', sum(len(l.handlers) for l in loggers))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chattalk_project.settings", "ACCESS_LOG": "on", "DEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "UNSCRUBBED []" in result.stdout, result.stdout
    assert "HANDLERS 0" not in result.stdout


def scrubbed_output(formatter: logging.Formatter, emit: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets())
    handler.setFormatter(formatter)
    logger = logging.Logger("scrubbed")  # outside the logger tree: only this handler sees its records
    logger.addHandler(handler)
    emit(logger)  # type: ignore[operator]
    return stream.getvalue()


def test_invitation_tokens_in_paths_are_scrubbed_and_the_rest_of_the_path_is_kept() -> None:
    invite = "Q2hhdFRhbGstaW52aXRlLXRva2VuLTQyLWxvbmctZW5vdWdo"  # the shape of secrets.token_urlsafe(32)

    def emit(logger: logging.Logger) -> None:
        logger.info('"POST /api/invites/%s/accept HTTP/1.1" 200', invite)
        logger.info("GET /invites/%s/ from 127.0.0.1", invite)
        logger.info("DELETE /api/rooms/3/invites/by-id/17")

    output = scrubbed_output(logging.Formatter("%(message)s"), emit)
    assert invite not in output, output
    assert "/api/invites/[redacted]/accept" in output and "/invites/[redacted]/ from" in output
    assert "/api/rooms/3/invites/by-id/17" in output  # an id is no secret


@pytest.mark.parametrize("formatter", [logging.Formatter("%(message)s"), JsonFormatter()], ids=["text", "json"])
def test_tokens_are_scrubbed_from_arguments_of_any_type_and_from_tracebacks(formatter) -> None:
    jwt = FORGED

    def emit(logger: logging.Logger) -> None:
        logger.info("%s - %s", "127.0.0.1:5", f"/ws/rooms/1/?access_token={OPAQUE}&after_seq=3")
        logger.info("scope %s", {"query_string": f"access_token={jwt}".encode(), "headers": [(b"x", b"y")]})
        logger.info("headers %r", [(b"authorization", f"Bearer {OPAQUE}".encode())])
        logger.info("%(who)s sent %(what)s", {"who": "someone", "what": f"bearer.{jwt}"})
        logger.warning(f"cookie sessionid={OPAQUE}; refresh={jwt}")
        logger.info(ValueError(f"token {jwt} refused"))
        try:
            raise RuntimeError(f"could not decode {jwt}")
        except RuntimeError:
            logger.exception("failed for access_token=%s", OPAQUE, stack_info=True)

    output = scrubbed_output(formatter, emit)
    assert jwt not in output and OPAQUE not in output and jwt.split(".")[2] not in output, output
    assert "access_token=[redacted]&after_seq=3" in output  # the rest of the line is kept
    assert "Traceback" in output and "could not decode [redacted]" in output
    assert "Bearer [redacted]" in output and "bearer.[redacted]" in output


def test_a_record_that_cannot_be_formatted_is_replaced_not_raised() -> None:
    output = scrubbed_output(logging.Formatter("%(message)s"), lambda lg: lg.info("%s and %s", f"refresh={FORGED}"))
    assert FORGED not in output and "could not be scrubbed" in output
