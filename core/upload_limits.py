"""Refusing an oversized upload before it is all read.

Django's ASGI handler reads a request's whole body (spooling it to disk) before any view runs, so a view
cannot refuse an oversized body early. `BodySizeLimit` wraps the ASGI application instead: for the paths
it is given, a declared Content-Length above the limit is answered 413 at once, without reading the body;
a body without one (chunked) is counted as it streams in and cut off, then answered 413, as soon as it
passes the limit. `CappedUploadHandler` does the same inside Django (the test client, any WSGI server),
and the view checks Content-Length before authentication, which may parse the body for its CSRF check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.files.uploadhandler import FileUploadHandler

from .domain import DomainError
from .errors import error_body


class UploadTooLarge(DomainError):
    code = "file_too_large"
    http_status = 413
    default_detail = "The file is larger than this server accepts."


def declared_length(value: str | bytes | None) -> int | None:
    """A Content-Length value, or None when absent or not a number (the server deals with those)."""
    if value is None:
        return None
    try:
        length = int(value)
    except (TypeError, ValueError):
        return None
    return length if length >= 0 else None


class CappedUploadHandler(FileUploadHandler):
    """First in the handler chain: refuses a file part as soon as it passes `max_bytes`."""

    def __init__(self, request: Any = None, *, max_bytes: int, detail: str | None = None):
        super().__init__(request)
        self.max_bytes, self.detail = max_bytes, detail

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.max_bytes:
            raise UploadTooLarge(self.detail)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler in the chain makes the file


Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodySizeLimit:
    """ASGI middleware: `limits` maps a path pattern to a callable giving that path's body limit in bytes
    (read per request, so that settings changed at run time apply)."""

    def __init__(self, app: Any, limits: dict[re.Pattern[str], Callable[[], int]], detail: str | None = None):
        self.app, self.limits = app, limits
        self.detail = detail or UploadTooLarge.default_detail

    def limit_for(self, scope: Scope) -> int | None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return None
        for pattern, limit in self.limits.items():
            if pattern.fullmatch(scope.get("path", "")):
                return limit()
        return None

    async def refuse(self, send: Send) -> None:
        body = json.dumps(error_body(UploadTooLarge.code, self.detail)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope)
        if limit is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = declared_length(headers.get(b"content-length"))
        if declared is not None and declared > limit:
            await self.refuse(send)
            return
        received, over, started = 0, False, False

        async def counted_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True  # the app sees a client that went away, and stops reading
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if over:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counted_receive, tracked_send)
        if over and not started:
            await self.refuse(send)
