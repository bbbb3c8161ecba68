"""Oversized uploads against the real ASGI server: refused before the body is read (core.upload_limits)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from rooms.services import create_room

LIMIT = 100_000  # ATTACHMENT_MAX_BYTES of the server under test


@pytest.fixture
def upload_server(server_factory: Any, tmp_path: Path) -> Any:
    return server_factory(env={"ATTACHMENT_MAX_BYTES": str(LIMIT), "MEDIA_ROOT": str(tmp_path / "media"), "RATE_LIMITS": "off"})


@pytest.fixture
def member(transactional_db: None) -> tuple[User, Any, str]:
    user = User.objects.create_user(username="uploader", password="pw-Secret-123")
    room = create_room(owner=user, title="files", max_personnel=5)
    return user, room, str(AccessToken.for_user(user))


def read_response(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 20:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def request_head(room_id: int, token: str, port: int, extra: str) -> bytes:
    return (
        f"POST /api/rooms/{room_id}/attachments HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary=b\r\n{extra}\r\n"
    ).encode()


def test_a_declared_oversized_upload_is_answered_413_before_any_of_its_body_is_sent(upload_server, member):
    _, room, token = member
    with socket.create_connection(("127.0.0.1", upload_server.port)) as sock:
        sock.sendall(request_head(room.pk, token, upload_server.port, f"Content-Length: {50 * 1024 * 1024}\r\n"))
        answer = read_response(sock, timeout=10)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "file_too_large"


def test_a_streamed_upload_without_a_length_is_cut_off_soon_after_the_limit(upload_server, member):
    _, room, token = member
    sent = 0
    chunk = b"x" * 16384
    with socket.create_connection(("127.0.0.1", upload_server.port)) as sock:
        sock.sendall(request_head(room.pk, token, upload_server.port, "Transfer-Encoding: chunked\r\n"))
        sock.setblocking(False)
        answer = b""
        deadline = time.monotonic() + 20
        while sent < 40 * LIMIT and time.monotonic() < deadline:
            try:
                answer += sock.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
            try:
                sock.setblocking(True)
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            finally:
                sock.setblocking(False)
            time.sleep(0.005)  # a paced client: what it sent before the answer is what the server read
        sock.setblocking(True)
        answer += read_response(sock, timeout=5)
    assert answer.startswith(b"HTTP/1.1 413"), (sent, answer[:200])
    assert sent < 10 * LIMIT  # refused after about the limit (plus socket buffers), not after all of it


def test_an_upload_within_the_limit_passes_the_guard_and_downloads(upload_server, member):
    _, room, token = member
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=upload_server.http_url, headers=headers, timeout=20) as client:
        answer = client.post(f"/api/rooms/{room.pk}/attachments", files={"file": ("n.txt", b"hello " * 1000, "text/plain")})
        assert answer.status_code == 201, answer.text
        assert client.get(answer.json()["url"]).content == b"hello " * 1000
        too_big = client.post(f"/api/rooms/{room.pk}/attachments", files={"file": ("n.txt", b"a" * (LIMIT + 1), "text/plain")})
        assert too_big.status_code == 413 and too_big.json()["code"] == "file_too_large"
