"""The REST API's JSON parser: DRF's, plus a 400 for JSON nested too deeply to parse.

Why: Python's json module raises RecursionError (not ValueError) on a body such as `[[[[...]]]]` nested a few
thousand levels deep, which DRF's JSONParser does not catch, so a 20 KB hostile body became a 500 on every
endpoint. Here it is the contract's 400 `malformed_request`, like any other unparsable body.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class JSONParserRefusingDeepNesting(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - the body is nested too deeply.") from exc
