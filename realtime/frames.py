"""What every socket shares on the wire: one encoder, the contract's close codes, error and pong frames.

A frame is encoded once and the same text goes to every receiver, so nothing in it may depend on who reads it.
"""

from __future__ import annotations

import json
from typing import Any

CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_IDLE = 4408
CLOSE_TOO_MANY = 4429
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013
CLOSE_INTERNAL = 1011


def encode(frame: dict[str, Any]) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def error_frame(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "detail": detail, **extra}


def pong_frame() -> dict[str, Any]:
    return {"type": "pong"}
