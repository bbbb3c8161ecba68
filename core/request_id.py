"""One id per HTTP request or WebSocket connection, carried into every log line of its work."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def new_request_id() -> str:
    return uuid.uuid4().hex[:12]


class RequestIdMiddleware:
    """Takes X-Request-ID from the balancer when it is sane, else makes one; echoes it in the response."""

    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def _bind(self, request: HttpRequest) -> contextvars.Token[str]:
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if 0 < len(incoming) <= 64 and incoming.replace("-", "").isalnum() else new_request_id()
        request.request_id = rid  # type: ignore[attr-defined]
        return current_request_id.set(rid)

    def __call__(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        if iscoroutinefunction(self):
            return self.__acall__(request)
        token = self._bind(request)
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
            return response
        finally:
            current_request_id.reset(token)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        token = self._bind(request)
        try:
            response = await self.get_response(request)  # type: ignore[misc]
            response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
            return response
        finally:
            current_request_id.reset(token)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (LOG_FORMAT=json)."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            # RedactSecrets leaves the scrubbed traceback in exc_text: prefer it to formatting a fresh one.
            payload["exc"] = record.exc_text or self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = record.stack_info
        return json.dumps(payload, ensure_ascii=False)


class WithoutTraceback(logging.Filter):
    """For refusals of bad client input that Django logs with a traceback (a forged Host header): one line,
    not forty, so that a scanner cannot flood the log and real tracebacks stay findable."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


# What a credential looks like in a log line: a query or form parameter that carries one, an Authorization
# header or WebSocket subprotocol ("Bearer <token>", "bearer.<jwt>"), an invitation path, or a JWT anywhere (its header is
# base64url JSON, so it always starts with "eyJ"). Values stop where a URL, quote or bracket would end them.
_SECRET_PARAMETER = re.compile(
    r"(?<![A-Za-z0-9])(access_token|refresh_token|refresh|token|sessionid)=[^\s&#\"'<>\]\[,;)]+", re.IGNORECASE
)
_BEARER = re.compile(r"(?<![A-Za-z0-9])(bearer)([ .]+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){1,2}")
# An invitation's token is a capability carried in the path (/invites/<token>/, /api/invites/<token>/accept).
_INVITE_PATH = re.compile(r"(/invites/)[A-Za-z0-9_-]{16,}")
REDACTED = "[redacted]"


def redact_secrets(text: str) -> str:
    """`text` with every token-like value replaced by [redacted] (parameter names and "Bearer" are kept)."""
    if "=" not in text and "eyJ" not in text and "earer" not in text.lower() and "/invites/" not in text:
        return text  # the common case: nothing to look at, no regex run
    text = _INVITE_PATH.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    text = _SECRET_PARAMETER.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def _has_secret(text: str) -> bool:
    return redact_secrets(text) != text


class RedactSecrets(logging.Filter):
    """No token in any log line: scrubs the message, its arguments and any traceback of every record.

    Installed on the handlers (settings.LOGGING), not on loggers, because a logger's filter does not see the
    records its children propagate to it; and settings.LOGGING routes uvicorn's own loggers (the "WebSocket
    ... [accepted]" line carries the socket's query string, `?access_token=` included) to those handlers.
    The arguments are scrubbed one by one so that formatters reading them (uvicorn's access log) keep
    working; when a secret only shows once they are put together, the record becomes the scrubbed text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._scrub(record)
        except Exception:  # noqa: BLE001 - a filter that raises breaks the caller; and the record stays unread
            record.msg, record.args = "a log record that could not be scrubbed of secrets was dropped", None
            record.exc_info = record.exc_text = record.stack_info = None
        return True

    @staticmethod
    def _scrub(record: logging.LogRecord) -> None:
        if not record.args:
            if _has_secret(str(record.msg)):
                record.msg = redact_secrets(str(record.msg))
        else:
            # msg is a template here ("access_token=%s" must keep its %s): scrub the arguments instead.
            if isinstance(record.args, tuple):
                record.args = tuple(redact_secrets(a) if isinstance(a, str) else a for a in record.args)
            elif isinstance(record.args, dict):
                record.args = {k: redact_secrets(v) if isinstance(v, str) else v for k, v in record.args.items()}
            # What only shows once put together (a secret in the template, in a dict, bytes or an exception
            # argument) makes the record its scrubbed text.
            message = record.getMessage()
            if _has_secret(message):
                record.msg, record.args = redact_secrets(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
