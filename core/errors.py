"""The contract's error body, {code, detail, fields}, for every 4xx and 5xx under /api/.

DRF's exception handler and Django's 404/500 handlers both land here, so a client never has to parse two
shapes. A 500 says only "server_error" and the request id: the traceback goes to the log, never the wire.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found, server_error
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .domain import DomainError
from .rate_limits import RateLimited
from .request_id import current_request_id

logger = logging.getLogger(__name__)


def error_body(code: str, detail: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return body


def _flatten_fields(data: Any) -> dict[str, list[str]]:
    if isinstance(data, dict):
        out: dict[str, list[str]] = {}
        for key, value in data.items():
            if isinstance(value, (list, tuple)):
                out[str(key)] = [str(v) if not isinstance(v, dict) else str(v) for v in value]
            elif isinstance(value, dict):
                out[str(key)] = [str(value)]
            else:
                out[str(key)] = [str(value)]
        return out
    if isinstance(data, (list, tuple)):
        return {"non_field_errors": [str(v) for v in data]}
    return {"non_field_errors": [str(data)]}


_DEFAULT_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        # A domain refusal raised by a service: its code and status are the contract's, as they are.
        refusal = Response(error_body(exc.code, exc.detail, exc.fields), status=exc.http_status)
        if isinstance(exc, RateLimited):
            refusal["Retry-After"] = str(exc.retry_after)
        return refusal
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is away or every pooled connection is busy past DATABASE_POOL_TIMEOUT (a storm): the
        # client retries shortly. Nothing was changed (the request's transaction, if any, rolled back).
        logger.warning("database unavailable in API view: %s", str(exc).strip()[:200])
        unavailable = Response(
            error_body("unavailable", "The database is busy or unavailable; retry shortly."), status=503
        )
        unavailable["Retry-After"] = "1"
        return unavailable
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled error in API view", exc_info=exc)
        return Response(
            error_body("server_error", f"Internal error; reference {current_request_id.get()}."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body("validation_error", "The request is not valid.", _flatten_fields(exc.detail))
    elif isinstance(exc, exceptions.Throttled):
        wait = f" Try again in {int(exc.wait)} s." if exc.wait else ""
        response.data = error_body("rate_limited", f"Too many requests.{wait}")
    elif isinstance(exc, exceptions.ParseError):
        response.data = error_body("malformed_request", str(exc.detail))
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = _DEFAULT_CODES.get(response.status_code, "error")
        if isinstance(detail, dict):
            raw_code = detail.get("code")
            if isinstance(raw_code, str) and raw_code:
                code = raw_code
            text = str(detail.get("detail", detail))
        else:
            text = str(detail)
            api_code = getattr(detail, "code", None)
            if isinstance(api_code, str) and api_code not in {"invalid", "error"}:
                code = api_code
        response.data = error_body(code, text)
    return response


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/graphql")


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return page_not_found(request, exception)  # type: ignore[arg-type]


def handler500(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(
            error_body("server_error", f"Internal error; reference {current_request_id.get()}."), status=500
        )
    return server_error(request)
