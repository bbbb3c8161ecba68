"""Query parameters, parsed one way for every view that reads them (REST and the pages).

A malformed value is the domain's InvalidInput: a 400 `validation_error` whose `fields` names the parameter,
never a 500 from deeper down. The database's own bounds are checked here, once: an integer must fit a
bigint, and a time must be a real instant that still exists after conversion to UTC (`2026-02-30`, hour 25,
year 0, an offset of +99:00 or `9999-12-31T23:59-01:00` would otherwise fail inside the query).

An empty value (`?limit=`) counts as absent, as a form submitted with an empty field does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime
from rest_framework.pagination import PageNumberPagination as DRFPageNumberPagination

from .domain import InvalidInput

MAX_BIGINT = 2**63 - 1
TIME_MAX_LENGTH = 64
_INTEGER = re.compile(r"-?[0-9]{1,19}")


def _refuse(name: str, message: str) -> InvalidInput:
    return InvalidInput(f"The query parameter `{name}` is not valid.", fields={name: [message]})


def _raw(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    return None if value is None or value == "" else str(value)


def integer_param(
    params: Mapping[str, Any],
    name: str,
    *,
    minimum: int = 0,
    maximum: int = MAX_BIGINT,
    default: int | None = None,
) -> int | None:
    """ASCII digits (an optional minus) within [minimum, maximum]; `default` when absent."""
    raw = _raw(params, name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise _refuse(name, f"Must be an integer from {minimum} to {maximum}.")
    return int(raw)


def time_param(params: Mapping[str, Any], name: str) -> datetime | None:
    """An ISO 8601 time, in UTC. Without an offset it is UTC; a `+` that arrived as a space is a `+`."""
    raw = _raw(params, name)
    if raw is None:
        return None
    message = "Must be an ISO 8601 time, e.g. 2026-11-26T09:00:00+00:00."
    if len(raw) > TIME_MAX_LENGTH:
        raise _refuse(name, message)
    try:
        parsed = parse_datetime(raw.strip().replace(" ", "+"))
        if parsed is None:
            raise ValueError(raw)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # a well-formed impossible time, or one out of range in UTC
        raise _refuse(name, message) from None


def text_param(params: Mapping[str, Any], name: str, *, max_length: int, default: str = "") -> str:
    """Text up to max_length characters with no control characters (a NUL is refused by PostgreSQL)."""
    raw = _raw(params, name)
    if raw is None:
        return default
    if len(raw) > max_length:
        raise _refuse(name, f"Must be at most {max_length} characters.")
    if any(unicodedata.category(char) in {"Cc", "Cs"} for char in raw):
        raise _refuse(name, "Must not contain control characters.")
    return raw


def page_param(params: Mapping[str, Any], name: str = "page") -> int:
    """A page number from 1; a page past the end is for the paginator to answer."""
    return integer_param(params, name, minimum=1, default=1)  # type: ignore[return-value]


class PageNumberPagination(DRFPageNumberPagination):
    """DRF's page-number pages, with `page` parsed like every other query parameter: `?page=abc` is a 400
    `validation_error`, not DRF's 404 "Invalid page" (which stays the answer to a page past the end)."""

    def get_page_number(self, request: Any, paginator: Any) -> int | str:
        if request.query_params.get(self.page_query_param) in self.last_page_strings:
            return paginator.num_pages
        return page_param(request.query_params, self.page_query_param)
