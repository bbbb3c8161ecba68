"""The REST API's JSON parser: DRF's, plus a 400 for JSON nested too deeply to parse or carrying NUL.

Why: Python's json module raises RecursionError (not ValueError) on a body such as `[[[[...]]]]` nested a few
thousand levels deep, which DRF's JSONParser does not catch, so a 20 KB hostile body became a 500 on every
endpoint. And PostgreSQL text cannot hold a NUL character: a "\u0000" in any string that reaches a query
(a login's username, say) became a DataError, a 500. No field of the API can carry one, so a body with a
NUL anywhere is refused here, once for every endpoint. Both are the contract's 400 `malformed_request`.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _has_nul(value: Any) -> bool:
    """Iterative walk (a recursive one could hit the recursion limit on a body the parser accepted)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


class JSONParserRefusingDeepNesting(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - the body is nested too deeply.") from exc
        if _has_nul(data):
            raise ParseError("JSON parse error - NUL characters are not allowed in any field.")
        return data
